"""Image and mask decoding with TensorFlow ops, including palette-indexed PNGs.

TensorFlow's PNG decoder expands a palette to colours. To read palette indices, `object_ids` rewrites the
file as the grayscale PNG with the same pixel data (colour type 0 in the header, with its CRC, and the
`PLTE` / `tRNS` chunks left out), whose gray values are the indices: exact for any palette (repeated
colours included) and as fast as decoding a grayscale image. Grayscale masks are read as their values.
RGB masks are refused with an error naming the file: object ids are not recoverable from them.
"""

import tensorflow as tf

PNG_PALETTE = 3
PNG_GRAY = 0
_DROPPED_CHUNKS = (b'PLTE', b'tRNS')


def _crc_table() -> list[int]:
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = 0xEDB88320 ^ (c >> 1) if c & 1 else c >> 1
    table.append(c)
  return table


_CRC_TABLE = _crc_table()
_BYTE_STRINGS = [bytes([i]) for i in range(256)]


def _be32(raw: tf.Tensor, at: tf.Tensor) -> tf.Tensor:
  """Big-endian uint32 at byte `at` of a uint8 vector, as int64."""
  b = tf.cast(raw[at : at + 4], tf.int64)
  return b[0] * 16777216 + b[1] * 65536 + b[2] * 256 + b[3]


def _crc32(data: tf.Tensor) -> tf.Tensor:
  """PNG's CRC-32 of a short uint8 vector of static length, as int64."""
  table = tf.constant(_CRC_TABLE, tf.int64)
  crc = tf.constant(0xFFFFFFFF, tf.int64)
  for i in range(data.shape[0]):
    crc = tf.bitwise.bitwise_xor(
      tf.gather(table, tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(crc, tf.cast(data[i], tf.int64)), 0xFF)),
      tf.bitwise.right_shift(crc, 8),
    )
  return tf.bitwise.bitwise_xor(crc, 0xFFFFFFFF)


def _bytes(values: tf.Tensor) -> tf.Tensor:
  """A uint8-valued vector as a byte string."""
  return tf.strings.reduce_join(tf.gather(tf.constant(_BYTE_STRINGS), tf.cast(values, tf.int32)))


def palette_as_gray(data: tf.Tensor) -> tf.Tensor:
  """A palette PNG rewritten as the grayscale PNG of its indices (same bit depth, same pixel data)."""
  raw = tf.io.decode_raw(data, tf.uint8)
  header = tf.concat([raw[12:25], tf.zeros([1], tf.uint8), raw[26:29]], 0)  # 'IHDR' + fields, colour type 0
  crc = _crc32(tf.ensure_shape(header, [17]))
  crc_bytes = tf.stack([tf.bitwise.bitwise_and(tf.bitwise.right_shift(crc, k), 0xFF) for k in (24, 16, 8, 0)])
  start = tf.strings.join([tf.strings.substr(data, 0, 12), _bytes(header), _bytes(crc_bytes)])
  size = tf.cast(tf.size(raw), tf.int64)

  def more(at, out):
    return at + 8 <= size

  def keep_chunk(at, out):
    total = 12 + _be32(raw, at)
    kind = tf.strings.substr(data, at + 4, 4)
    dropped = tf.reduce_any(tf.equal(kind, tf.constant(_DROPPED_CHUNKS)))
    chunk = tf.where(dropped, tf.constant(b''), tf.strings.substr(data, at, total))
    return at + total, tf.strings.join([out, chunk])

  _, png = tf.while_loop(more, keep_chunk, (tf.constant(33, tf.int64), start))
  return png


def object_ids(data: tf.Tensor, name: tf.Tensor) -> tf.Tensor:
  """A palette or grayscale PNG mask -> (H, W) int32 object ids; other colour types raise naming `name`."""
  raw = tf.io.decode_raw(tf.strings.substr(data, 0, 33), tf.uint8)
  bit_depth, colour_type = tf.cast(raw[24], tf.int32), tf.cast(raw[25], tf.int32)
  tf.debugging.Assert(
    tf.logical_or(tf.equal(colour_type, PNG_PALETTE), tf.equal(colour_type, PNG_GRAY)),
    [
      tf.strings.join(
        [name, ': mask is not palette-indexed or grayscale (PNG colour type ', tf.strings.as_string(colour_type), ')']
      )
    ],
  )
  gray = tf.cond(tf.equal(colour_type, PNG_PALETTE), lambda: palette_as_gray(data), lambda: data)
  values = tf.cast(tf.io.decode_png(gray, channels=1)[..., 0], tf.int32)
  # grayscale below 8 bits is scaled up to 0 … 255 by the decoder; palette indices are not scaled
  scale = tf.where(
    tf.logical_and(tf.equal(colour_type, PNG_PALETTE), bit_depth < 8),
    255 // (tf.bitwise.left_shift(1, tf.minimum(bit_depth, 7)) - 1),
    1,
  )
  return values // scale


# PIL decodes JPEGs with libjpeg's accurate integer DCT; TensorFlow's default (a faster DCT) differs from it by
# up to 8 levels, 0.8 darker on average on DAVIS frames
JPEG_DCT = 'INTEGER_ACCURATE'


def rgb(data: tf.Tensor) -> tf.Tensor:
  """A JPEG (decoded as PIL decodes it) or another image -> (H, W, 3) float32 in [0, 1]."""
  image = tf.cond(
    tf.io.is_jpeg(data),
    lambda: tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT),
    lambda: tf.ensure_shape(tf.io.decode_image(data, channels=3, expand_animations=False), [None, None, 3]),
  )
  return tf.image.convert_image_dtype(image, tf.float32)


def gray(data: tf.Tensor) -> tf.Tensor:
  """An 8-bit mask read as grayscale -> (H, W, 1) float32 in [0, 1] (PIL `convert('L')` of the reference)."""
  return tf.cast(tf.io.decode_png(data, channels=1), tf.float32) / 255.0


def jpeg_size(data: tf.Tensor) -> tf.Tensor:
  """(height, width) int32 of a JPEG, read from its header."""
  return tf.io.extract_jpeg_shape(data)[:2]


def rgb_crop(data: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
  """Decodes only the window `box (top, left, height, width)` of a JPEG -> (h, w, 3) float32 in [0, 1]."""
  return tf.image.convert_image_dtype(
    tf.io.decode_and_crop_jpeg(data, box, channels=3, dct_method=JPEG_DCT), tf.float32
  )


def assert_size(image_or_size: tf.Tensor, expected: tf.Tensor, name: tf.Tensor, of: str = 'its frame') -> list:
  """The assertion (a control dependency) that an image (or a (2,) size) is `expected (height, width)`."""
  size = image_or_size if image_or_size.shape.rank == 1 else tf.shape(image_or_size)[:2]

  def text(hw):
    return tf.strings.join([tf.strings.as_string(hw[1]), tf.strings.as_string(hw[0])], '×')

  return [
    tf.debugging.Assert(
      tf.reduce_all(tf.equal(size, expected)),
      [tf.strings.join([name, ': size ', text(size), f' differs from {of} ', text(expected)])],
    )
  ]


def assert_same_size(image: tf.Tensor, mask: tf.Tensor, mask_path: tf.Tensor) -> list:
  """The assertion that `mask` has the height and width of `image`."""
  return assert_size(mask, tf.shape(image)[:2], mask_path)
