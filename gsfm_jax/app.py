"""A web page for your own videos: paint the objects, watch them propagate, correct, download.

  python -m gsfm_jax.app --checkpoint runs/main                  # then open http://127.0.0.1:7860
  python -m gsfm_jax.app --checkpoint GSFM.pth --video clip.mp4 --port 8080 --capacity 32

On the page: open a video (an upload, or a path on this machine: a video file or a folder of frames); pick an
object and paint it on frame 0 with the brush (the eraser takes it back), or upload a mask in any form
`predict` reads; Propagate (the results appear chunk by chunk, with frames/s and the ETA); scrub through the
overlaid result with the frame slider; where it drifts, repaint that frame and Propagate from it (the frames
before stay as they were); Downloads gives masks.zip (palette PNGs as `predict` writes them, the masks you
gave, and the `predict` command that gives the same masks) and overlay.mp4.
The engine runs as it does for `predict` (chunked; constant memory with --capacity; on the accelerator when
there is one). Needs the app extra (`make setup-app`: Gradio). On a remote GPU host, start it there and
forward the port: `ssh -L 7860:127.0.0.1:7860 HOST`, then open http://127.0.0.1:7860 here.
"""

import argparse
import os
import shutil
import socket
import sys
import tempfile
from typing import Optional

import numpy as np

from data_pipelines.palette import davis_palette
from gsfm_jax import cli, console, predict
from gsfm_jax.inference import media

DEFAULT_SIZE = (480, 854)  # the frame size the editor's tools are sized for before a video is open


def colour(i: int) -> str:
  """The brush colour of object i: its colour in the mask PNGs (the DAVIS palette), '#rrggbb'."""
  return '#' + ''.join(f'{c:02x}' for c in davis_palette()[i])


def brush_size(size: tuple[int, int]) -> int:
  """The brush and eraser size for frames of `size` (H, W): a twentieth of the shorter side, at least 3 pixels."""
  return max(3, min(size) // 20)


def layer_ids(layer: np.ndarray, max_objects: int) -> np.ndarray:
  """A painted RGBA layer (H, W, 4) -> object ids (H, W) uint8: every painted pixel (alpha > 0) is the object
  whose palette colour is nearest to its colour; unpainted or erased pixels are background."""
  palette = davis_palette()[1 : max_objects + 1].astype(np.int32)
  distance = ((layer[..., None, :3].astype(np.int32) - palette) ** 2).sum(-1)
  return np.where(layer[..., 3] > 0, distance.argmin(-1) + 1, 0).astype(np.uint8)


def ids_layer(ids: Optional[np.ndarray], size: tuple[int, int]) -> np.ndarray:
  """Object ids (H, W) -> the RGBA layer that shows them in the editor (opaque objects, transparent background)."""
  layer = np.zeros((*size, 4), np.uint8)
  if ids is not None:
    layer[..., :3] = davis_palette()[ids]
    layer[..., 3] = np.where(ids > 0, 255, 0)
  return layer


class Page:
  """The served network and what the page's events do; one `annotation.Session` per browser tab."""

  def __init__(self, args: argparse.Namespace):
    from gsfm_jax import weights

    self.args = args
    self.model, self.variables = weights.load_for_inference(args.checkpoint, args.dtype, args.model)
    self.root = args.workdir or tempfile.mkdtemp(prefix='gsfm_app_')
    os.makedirs(self.root, exist_ok=True)
    self.engines: dict = {}

  def engine(self, protocol):
    """The Propagator of a memory protocol, made once (its compiled programs serve every session)."""
    from gsfm_jax.inference import Propagator

    if protocol not in self.engines:
      self.engines[protocol] = Propagator(self.model, self.variables, protocol)
    return self.engines[protocol]

  def open(self, upload: Optional[str], path: str):
    """A new session on the uploaded video, else on `path`."""
    from gsfm_jax.annotation import Session

    video = upload or path.strip()
    if not video:
      raise media.InputError('upload a video or give the path of one (a video file or a folder of frames)')
    folder = tempfile.mkdtemp(prefix='session_', dir=self.root)
    try:
      return Session(self.engine, video, folder, self.args)
    except media.InputError:
      shutil.rmtree(folder, ignore_errors=True)
      raise

  def mask_of(self, session, t: int, editor: Optional[dict], mask_file: Optional[str]) -> np.ndarray:
    """The ids of frame t: an uploaded mask (any form `predict` reads), else the editor's painted layer."""
    if mask_file:
      return media.read_mask([mask_file], session.video.size).labels
    layers = (editor or {}).get('layers') or []
    if not layers:
      raise media.InputError('nothing painted: pick an object and paint it on the frame')
    return layer_ids(np.asarray(layers[0]), self.args.max_objects)


def build_page(page: Page):
  """The Gradio Blocks of the page."""
  import gradio as gr

  def refuse(error: Exception, outputs: int) -> tuple:
    """A message on the page for a bad input; the outputs stay as they were."""
    gr.Warning(str(error))
    return (gr.skip(),) * outputs

  def editor_value(session, t: int) -> dict:
    return {
      'background': session.frame(t),
      'layers': [ids_layer(session.result(t), session.video.size)],
      'composite': None,
    }

  def tools(i: int, size: tuple[int, int]) -> dict:
    """The editor's brush in object i's colour and its eraser, both sized for the video."""
    brush = gr.Brush(colors=[colour(i)], default_color=colour(i), color_mode='fixed', default_size=brush_size(size))
    return {'brush': brush, 'eraser': gr.Eraser(default_size=brush_size(size))}

  def open_video(upload, path, i):
    try:
      session = page.open(upload, path)
    except media.InputError as error:
      return refuse(error, 5)
    h, w = session.video.size
    status = f'{session.path}: {len(session)} frames of {w}×{h}. Paint the objects on frame 0.'
    slider = gr.Slider(minimum=0, maximum=len(session) - 1, value=0, step=1)
    editor = gr.ImageEditor(value=editor_value(session, 0), **tools(int(i), session.video.size))
    return session, slider, editor, session.frame(0), status

  def show(session, t):
    if session is None:
      return gr.skip(), gr.skip()
    t = int(t)
    return editor_value(session, t), session.overlay(t)

  def pick(session, i):
    return gr.ImageEditor(**tools(int(i), session.video.size if session else DEFAULT_SIZE))

  def propagate(session, t, editor, mask_file, progress=gr.Progress()):
    """Gives frame t's mask, propagates from t; yields (status, the last frame done, overlaid, the mask upload)."""
    from gsfm_jax.progress import Rate

    if session is None:
      yield refuse(media.InputError('open a video first'), 3)
      return
    t, total = int(t), len(session)
    try:
      session.give(t, page.mask_of(session, t, editor, mask_file))
      meter = Rate(total, t)
      for done in session.propagate(t):
        if not meter.started:  # the first chunk compiles: rates and the ETA count from its end
          meter.begin(done)
          line = f'frames {done}/{total} (compiled)'
        else:
          meter.update(done)
          line = f'frames {done}/{total} | {meter.rate:.2f} frames/s | ETA {meter.eta()}'
        progress((done - t, total - t), desc=line)
        yield line, session.overlay(done - 1), gr.skip()
    except media.InputError as error:
      yield refuse(error, 3)
      return
    done = f'done: frames {t}–{total - 1} propagated. Scrub to check; where it drifts, repaint and propagate.'
    yield done, session.overlay(t), None  # an uploaded mask served its frame

  def downloads(session):
    try:
      if session is None:
        raise media.InputError('open a video first')
      return list(session.archive())
    except media.InputError as error:
      return refuse(error, 1)[0]

  with gr.Blocks(title='GSFM: segment your own video') as blocks:
    session = gr.State(None)
    gr.Markdown(
      '## GSFM: segment your own video\n'
      '1. Open a video. 2. Pick an object, paint it on frame 0 (or upload its mask). 3. Propagate. '
      '4. Scrub; where it drifts, repaint that frame and Propagate from it. 5. Downloads.'
    )
    with gr.Row():
      upload = gr.File(label='Upload a video', file_types=list(media.VIDEO_EXTENSIONS), elem_id='upload')
      with gr.Column():
        path = gr.Textbox(
          label='…or a path on the serving machine (video file or frame folder)',
          value=page.args.video or '',
          elem_id='path',
        )
        open_button = gr.Button('Open', elem_id='open')
    status = gr.Markdown(elem_id='status')
    frame = gr.Slider(minimum=0, maximum=1, value=0, step=1, label='Frame', elem_id='frame')
    with gr.Row():
      with gr.Column():
        objects = gr.Radio(
          choices=[(f'object {i}', i) for i in range(1, page.args.max_objects + 1)],
          value=1,
          label='Object (brush colour)',
          elem_id='objects',
        )
        editor = gr.ImageEditor(
          type='numpy',
          image_mode='RGBA',
          sources=(),
          transforms=(),
          layers=False,
          **tools(1, DEFAULT_SIZE),
          label='Paint the objects on this frame',
          elem_id='editor',
        )
        mask_file = gr.File(label='…or upload a mask for this frame', elem_id='mask_upload')
        run = gr.Button('Propagate from this frame', variant='primary', elem_id='propagate')
      with gr.Column():
        view = gr.Image(label='Result', interactive=False, height=360, elem_id='view')
        make = gr.Button('Downloads', elem_id='downloads')
        files = gr.File(label='masks.zip and overlay.mp4', file_count='multiple', interactive=False, elem_id='files')
    open_button.click(open_video, [upload, path, objects], [session, frame, editor, view, status])
    frame.change(show, [session, frame], [editor, view])
    objects.change(pick, [session, objects], [editor])
    run.click(propagate, [session, frame, editor, mask_file], [status, view, mask_file])
    make.click(downloads, [session], [files])
  return blocks


def build_parser() -> cli.Parser:
  parser = cli.Parser(__doc__)
  parser.add_checkpoint()
  parser.add_argument('--video', help='a video file or frame folder on this machine to offer on the page')
  parser.add_argument('--host', default='127.0.0.1', help='address to serve on (0.0.0.0: every interface)')
  parser.add_count('port', 7860, 'port to serve on')
  parser.add_argument('--workdir', help="the sessions' files (default: a new temporary folder)")
  parser.add_argument('--resize', default='none', help="network input size: 'none', 'short:N' or 'long:N'")
  parser.add_count('max_objects', predict.MAX_OBJECTS, 'most objects in a video')
  parser.add_count('top_k', 50, 'memory entries each query pixel reads')
  parser.add_count('mem_every', 3, 'a memory frame every N frames')
  parser.add_count('capacity', None, 'memory frames kept (default: all); with it any length runs in constant memory')
  parser.add_dtype()
  return parser


def check_port(host: str, port: int) -> None:
  """InputError unless `port` can be served on `host` (checked before the weights are read)."""
  with socket.socket() as probe:
    try:
      probe.bind((host, port))
    except OSError as error:
      raise media.InputError(
        f'--port {port}: cannot serve on {host} ({error.strerror}); choose another --port'
      ) from None


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  build_parser().check(args)
  try:
    import gradio  # noqa: F401
  except ImportError:
    raise media.InputError('the page needs Gradio: make setup-app (or .venv/bin/pip install -e ".[app]")') from None
  if args.video:
    media.VideoReader(args.video)  # checked before the page starts
  media.parse_resize(args.resize, DEFAULT_SIZE)  # the flag's form, checked before the page starts
  check_port(args.host, args.port)
  console.show_info()
  page = Page(args)
  blocks = build_page(page)
  print(f'serving on http://{args.host}:{args.port} (sessions in {page.root}); Ctrl-C stops', flush=True)
  blocks.queue().launch(server_name=args.host, server_port=args.port, allowed_paths=[page.root], show_error=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
