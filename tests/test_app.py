"""The web page (`gsfm_jax.app`) in a real browser: headless Chromium driven by Playwright opens the built-in
video, paints two objects with mouse strokes, propagates, corrects frame 5, propagates again and downloads the
zip; the masks must be `predict`'s byte for byte. Bad input is a message on the page, which keeps working.
A screenshot of each step goes to $GSFM_SCREENSHOTS (default: the test's folder)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from gsfm_jax import predict

STEP_SECONDS = 240  # the longest wait for one step of the page (the first propagation compiles)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture
def server(weights, clip, tmp_path):
  """The page of the test checkpoint, served by `python -m gsfm_jax.app` with the built-in video offered."""
  port = free_port()
  log = open(tmp_path / 'app.log', 'w')
  env = {**os.environ, 'GRADIO_ANALYTICS_ENABLED': 'False', 'GRADIO_TEMP_DIR': str(tmp_path / 'gradio')}
  command = [sys.executable, '-m', 'gsfm_jax.app', '--checkpoint', weights, '--video', clip[0]]
  command += ['--port', str(port), '--workdir', str(tmp_path / 'sessions')]
  process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
  deadline = time.time() + 120
  while time.time() < deadline:
    try:
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      break
    except OSError:
      assert process.poll() is None, (tmp_path / 'app.log').read_text()[-3000:]
      time.sleep(0.5)
  else:
    pytest.fail('the page did not start in 120 s: ' + (tmp_path / 'app.log').read_text()[-3000:])
  yield f'http://127.0.0.1:{port}'
  process.terminate()
  process.wait(30)


def mp4_of(frames_dir: str, path) -> str:
  """The frames of a folder as an .mp4 (OpenCV, mp4v)."""
  import cv2

  frames = [cv2.imread(os.path.join(frames_dir, n)) for n in sorted(os.listdir(frames_dir))]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10, frames[0].shape[1::-1])
  for frame in frames:
    writer.write(frame)
  writer.release()
  return str(path)


def chromium() -> str:
  path = shutil.which('chromium') or shutil.which('chromium-browser')
  assert path, 'no chromium: make test installs it (apt-get install chromium)'
  return path


class Browser:
  """The page in headless Chromium: clicks, mouse strokes on the editor's canvas in image pixels, screenshots."""

  def __init__(self, page, shots: str, size: tuple[int, int]):
    self.page, self.shots, self.size, self.count = page, shots, size, 0

  def shot(self, name: str) -> None:
    self.count += 1
    self.page.screenshot(path=os.path.join(self.shots, f'{self.count}-{name}.png'), full_page=True)

  def status(self, text: str, seconds: float = STEP_SECONDS) -> None:
    """Waits until the status line says `text`."""
    self.page.wait_for_function(
      f"document.querySelector('#status').innerText.includes({text!r})", timeout=1000 * seconds
    )

  def stroke(self, tool: str, points: list[tuple[float, float]]) -> None:
    """Drags the mouse with `tool` ('Brush' or 'Erase') through image points (x, y) of the frame shown."""
    import re

    self.page.click(f'#editor button[aria-label="{tool}"]')
    zoom = int(re.search(r'(\d+)%', self.page.locator('#editor').inner_text()).group(1)) / 100
    box = self.page.locator('#editor canvas').first.bounding_box()
    cx, cy = box['x'] + box['width'] / 2, box['y'] + box['height'] / 2
    screen = lambda x, y: (cx + (x - self.size[1] / 2) * zoom, cy + (y - self.size[0] / 2) * zoom)
    self.page.mouse.move(*screen(*points[0]))
    self.page.mouse.down()
    for point in points[1:]:
      self.page.mouse.move(*screen(*point), steps=10)
    self.page.mouse.up()

  def settled(self) -> None:
    """Waits until the editor has taken its last update (a frame, a brush)."""
    self.page.wait_for_timeout(300)
    self.page.wait_for_function(
      "!document.querySelector('#editor').innerText.includes('processing')", timeout=1000 * STEP_SECONDS
    )

  def pick(self, i: int) -> None:
    """Picks object i; waits until the editor's brush has its palette colour."""
    from data_pipelines.palette import davis_palette

    self.page.click(f'#objects label:has-text("object {i}")')
    rgb = 'rgb({}, {}, {})'.format(*davis_palette()[i])
    self.page.wait_for_function(
      f'document.querySelector(\'#editor button[aria-label="Color"]\').style.color === {rgb!r}', timeout=60000
    )
    self.settled()

  def download(self, path) -> None:
    """Clicks Downloads and saves the masks.zip it makes (not an earlier one still listed) to `path`."""
    link = '#files a[download="masks.zip"]'
    old = self.page.locator(link).get_attribute('href') if self.page.locator(link).count() else ''
    self.page.click('#downloads')
    self.page.wait_for_function(
      f'(document.querySelector({link!r}) || {{}}).href && document.querySelector({link!r}).href !== {old!r}',
      timeout=1000 * STEP_SECONDS,
    )
    with self.page.expect_download() as download:
      self.page.locator(link).click()
    download.value.save_as(path)

  def error(self, text: str) -> None:
    """Waits for the page's error message saying `text`, then closes it."""
    toast = self.page.locator('.toast-body', has_text=text)
    toast.wait_for(timeout=60000)
    self.page.locator('.toast-close').first.click()


def test_the_page_paints_propagates_corrects_and_downloads_predicts_masks(server, weights, clip, tmp_path):
  from playwright.sync_api import sync_playwright

  frames_dir = clip[0]
  size = np.asarray(Image.open(os.path.join(frames_dir, sorted(os.listdir(frames_dir))[0]))).shape[:2]
  shots = os.environ.get('GSFM_SCREENSHOTS') or str(tmp_path / 'screenshots')
  os.makedirs(shots, exist_ok=True)
  with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
      executable_path=chromium(), args=['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    )
    page = browser.new_page(viewport={'width': 1400, 'height': 1100}, accept_downloads=True)
    page.goto(server, wait_until='load')
    page.wait_for_selector('#open', timeout=60000)
    b = Browser(page, shots, size)

    page.locator('#path textarea').fill(str(tmp_path / 'no_such_video.mp4'))  # bad input: a message, not a crash
    page.click('#open')
    b.error('no such video file or frame folder')
    page.locator('#path textarea').fill(frames_dir)
    page.click('#open')
    b.status('frames of')
    b.settled()
    b.shot('opened')
    page.click('#propagate')  # nothing painted yet
    b.error('no object painted')

    b.stroke('Brush', [(76, 30), (92, 34), (82, 40)])  # object 1
    b.pick(2)
    b.stroke('Brush', [(32, 48), (36, 58), (30, 60)])  # object 2
    b.shot('painted')
    page.click('#propagate')
    b.status('done: frames 0–7')
    b.shot('propagated')

    page.locator('#frame input[type=number]').fill('5')
    page.locator('#frame input[type=number]').press('Enter')
    b.settled()
    b.stroke('Erase', [(50, 34), (120, 34)])  # a line erased through object 1 at frame 5
    b.stroke('Brush', [(130, 70), (150, 80)])  # and object 2 painted where it is not
    b.shot('corrected')
    page.click('#propagate')
    b.status('done: frames 5–7')
    b.shot('propagated-again')

    b.download(tmp_path / 'masks.zip')
    b.shot('downloads')

    page.locator('#upload input[type=file]').set_input_files(mp4_of(frames_dir, tmp_path / 'upload.mp4'))
    page.wait_for_timeout(1000)
    page.click('#open')  # an upload comes before the path
    b.status('upload.mp4: 8 frames of 160×96')
    b.settled()
    page.locator('#mask_upload input[type=file]').set_input_files(clip[1])  # a mask file instead of painting
    page.wait_for_timeout(1000)
    page.click('#propagate')
    b.status('done: frames 0–7')
    b.download(tmp_path / 'upload.zip')
    browser.close()
  with zipfile.ZipFile(tmp_path / 'upload.zip') as uploaded:
    given = np.asarray(Image.open(uploaded.open('given/00000.png')))
  assert np.array_equal(given, np.asarray(Image.open(clip[1])))  # the uploaded mask, as predict reads it

  archive = zipfile.ZipFile(tmp_path / 'masks.zip')
  archive.extractall(tmp_path / 'zip')
  given = {t: np.asarray(Image.open(tmp_path / 'zip' / 'given' / f'{t:05d}.png')) for t in (0, 5)}
  assert given[0].shape == size and set(np.unique(given[0])) == {0, 1, 2}  # two objects painted with the mouse
  assert np.mean(given[0][31:34, 83:86] == 1) > 0.5 and np.mean(given[0][52:55, 33:36] == 2) > 0.5  # the strokes
  assert not given[5][34, 52:118].any() and np.mean(given[5][74:77, 139:142] == 2) > 0.5  # the correction's strokes
  names = sorted(os.listdir(tmp_path / 'zip' / 'masks'))
  assert len(names) == 8
  read = lambda folder, name: (folder / name).read_bytes()
  common = ['--checkpoint', weights, '--video', frames_dir, '--mask', str(tmp_path / 'zip' / 'given' / '00000.png')]
  assert predict.main(common + ['--out', str(tmp_path / 'first')]) == 0
  correction = ['--correct', f'5:{tmp_path / "zip" / "given" / "00005.png"}']
  assert predict.main(common + correction + ['--out', str(tmp_path / 'both')]) == 0
  for name in names[:5]:  # the page kept the frames before the correction: predict's without it, byte for byte
    assert read(tmp_path / 'zip' / 'masks', name) == read(tmp_path / 'first' / 'masks', name), name
  for name in names[5:]:  # and from it on, predict's with it
    assert read(tmp_path / 'zip' / 'masks', name) == read(tmp_path / 'both' / 'masks', name), name
  before = np.asarray(Image.open(tmp_path / 'first' / 'masks' / names[5]))
  assert not np.array_equal(before, given[5])  # the correction changed frame 5
  assert '--correct 5:given/00005.png' in archive.read('predict.txt').decode()


def test_bad_command_lines_are_one_line_each(weights, tmp_path, capsys):
  from gsfm_jax import app

  with socket.socket() as taken:
    taken.bind(('127.0.0.1', 0))
    port = taken.getsockname()[1]
    cases = {
      ('--video', str(tmp_path / 'missing.mp4')): 'missing.mp4: no such video file or frame folder',
      ('--port', str(port)): f'--port {port}: cannot serve on 127.0.0.1',
      ('--resize', 'short:x'): "--resize short:x: expected 'none', 'short:N' or 'long:N'",
      ('--port', '0'): '--port 0: must be at least 1',
    }
    for flags, message in cases.items():
      assert app.main(['--checkpoint', weights, *flags]) == 2
      err = capsys.readouterr().err.strip()
      assert err.startswith('error: ') and message in err and '\n' not in err, err
