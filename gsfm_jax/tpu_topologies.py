"""Cloud TPU slices by the names users book them under (v4-8, v5p-8, v5e-16, v6e-8, …) and the chips they hold.

Cloud's names count TensorCores for v4 and v5p (two per chip, joined as one "megacore" device) and chips for
v5e and v6e. JAX's compile-only topologies (`jax.experimental.topologies.get_topology_desc`) are named by
generation and chip grid instead ('v4:2x2x1', 'v5:2x2x1' for v5p, 'v5e:4x4'); `Slice` maps one to the other.
HBM and peak bf16 FLOP/s per chip are Google's data-sheet figures (cloud.google.com/tpu/docs, "System
architecture" pages of each generation).
"""

import re
from typing import Any, NamedTuple, Optional

GIB = 2**30


class Chip(NamedTuple):
  generation: str  # the user-facing prefix: 'v4', 'v5p', 'v5e', 'v6e'
  jax_name: str  # the prefix of JAX's topology name
  hbm_bytes: float  # data sheet
  peak_bf16: float  # dense bf16 FLOP/s (data sheet); float32 matmuls run at a quarter of it
  cores_per_name_unit: int  # 2: the name counts TensorCores (two per chip); 1: it counts chips
  grid_dims: int  # 3: a 3-D torus (v4, v5p); 2: a 2-D grid (v5e, v6e)
  chips_per_host: int  # chips on one host of a multi-host slice
  accelerator_type: str  # the name's prefix in TPU_ACCELERATOR_TYPE ('v5litepod' for v5e)
  device_kinds: tuple  # jax's Device.device_kind of a chip (compile-only devices of v5p say 'TPU v5')
  hbm_bandwidth: float  # bytes/s (data sheet)


CHIPS = {
  'v4': Chip('v4', 'v4', 32 * GIB, 275e12, 2, 3, 4, 'v4', ('TPU v4',), 1200e9),
  'v5p': Chip('v5p', 'v5', 95 * GIB, 459e12, 2, 3, 4, 'v5p', ('TPU v5p', 'TPU v5'), 2765e9),
  'v5e': Chip('v5e', 'v5e', 16 * GIB, 197e12, 1, 2, 4, 'v5litepod', ('TPU v5 lite', 'TPU v5e'), 819e9),
  'v6e': Chip('v6e', 'v6e', 32 * GIB, 918e12, 1, 2, 4, 'v6e', ('TPU v6 lite', 'TPU v6e'), 1640e9),
}
ALIASES = {'v5litepod': 'v5e', 'v5lite': 'v5e', 'v6litepod': 'v6e'}

# chip grids of the slice shapes Cloud offers, by chip count
GRIDS_3D = {
  4: (2, 2, 1),
  8: (2, 2, 2),
  16: (2, 2, 4),
  32: (2, 4, 4),
  64: (4, 4, 4),
  128: (4, 4, 8),
  256: (4, 8, 8),
  512: (8, 8, 8),
  1024: (8, 8, 16),
  2048: (8, 16, 16),
}
GRIDS_2D = {
  1: (1, 1, 1),
  4: (2, 2, 1),
  8: (2, 4, 1),
  16: (4, 4, 1),
  32: (4, 8, 1),
  64: (8, 8, 1),
  128: (8, 16, 1),
  256: (16, 16, 1),
}
SINGLE_HOST_2D = 8  # v5e/v6e slices of up to 8 chips are one host; larger ones have 4 chips per host


class TopologyError(ValueError):
  """A topology name that is not a Cloud TPU slice; the message lists the known ones."""


class Slice(NamedTuple):
  """One slice type: `name` as booked ('v5e-16'), its chip, grid and hosts."""

  name: str
  chip: Chip
  grid: tuple[int, int, int]

  @property
  def chips(self) -> int:
    return self.grid[0] * self.grid[1] * self.grid[2]

  @property
  def host_grid(self) -> tuple[int, int, int]:
    """Chips of one host, as a grid: the whole slice when it is one host."""
    if self.chip.grid_dims == 2 and self.chips <= SINGLE_HOST_2D:
      return self.grid
    return (2, 2, 1)

  @property
  def hosts(self) -> int:
    h = self.host_grid
    return self.chips // (h[0] * h[1] * h[2])

  @property
  def jax_topology(self) -> str:
    """JAX's name: 'v5e:4x4', 'v4:2x2x1'."""
    dims = self.grid if self.chip.grid_dims == 3 else self.grid[:2]
    return f'{self.chip.jax_name}:' + 'x'.join(map(str, dims))

  @property
  def accelerator_type(self) -> str:
    """The slice's TPU_ACCELERATOR_TYPE ('v5litepod-16')."""
    return f'{self.chip.accelerator_type}-{self.chips * self.chip.cores_per_name_unit}'

  def devices(self, slices: int = 1) -> list:
    """Compile-only devices of `slices` such slices (one device per chip; v4 and v5p as megacore). Needs libtpu."""
    from jax.experimental import topologies

    options: dict[str, Any] = {'chips_per_host_bounds': self.host_grid, 'num_slices': slices}
    if self.chip.cores_per_name_unit == 2:
      options['chip_config_name'] = 'megacore'
    return list(topologies.get_topology_desc(self.jax_topology, platform='tpu', **options).devices)


def chip_of_kind(device_kind: str) -> Optional[Chip]:
  """The chip whose devices report `device_kind` ('TPU v5 lite' -> v5e), or None."""
  return next((c for c in CHIPS.values() if device_kind in c.device_kinds), None)


def known() -> list[Slice]:
  """Every slice of the table, in generation and size order."""
  out = []
  for chip in CHIPS.values():
    grids = GRIDS_3D if chip.grid_dims == 3 else GRIDS_2D
    out += [Slice(f'{chip.generation}-{n * chip.cores_per_name_unit}', chip, grid) for n, grid in grids.items()]
  return out


def lookup(name: str) -> Slice:
  """'v5e-16' (or 'v5litepod-16', any case) -> its Slice; TopologyError names the known slices otherwise."""
  match = re.fullmatch(r'([a-z0-9]+)-(\d+)', name.strip().lower())
  if match:
    generation = ALIASES.get(match.group(1), match.group(1))
    for candidate in known():
      if candidate.name == f'{generation}-{match.group(2)}':
        return candidate
  names = ', '.join(s.name for s in known())
  raise TopologyError(
    f"--topology={name}: not a Cloud TPU slice name; known: {names} (or host: this machine's own devices)"
  )


def table() -> str:
  """The known slices as a Markdown table (what `python -m gsfm_jax.aot --list` prints)."""
  rows = [
    '| slice | chips | hosts | JAX topology | HBM per chip GiB | peak bf16 TFLOP/s per chip |',
    '|---|---|---|---|---|---|',
  ]
  megacore = lambda s: ' megacore' if s.chip.cores_per_name_unit == 2 else ''
  rows += [
    f'| {s.name} | {s.chips} | {s.hosts} | {s.jax_topology}{megacore(s)} | {s.chip.hbm_bytes / GIB:.0f} | '
    f'{s.chip.peak_bf16 / 1e12:.0f} |'
    for s in known()
  ]
  return '\n'.join(rows)
