"""What a network's variables must look like, and the check that names every difference."""

from typing import Mapping

import flax.traverse_util
import jax

from gsfm_jax.models import GSFM, init_variables
from gsfm_jax.weights.files import MAX_LISTED, ConversionError, listing

Path = tuple[str, ...]


def abstract_variables(model: GSFM) -> Mapping[Path, jax.ShapeDtypeStruct]:
  """Flat {(collection, *modules, leaf): ShapeDtypeStruct} of the model's variables, computing nothing."""
  return flax.traverse_util.flatten_dict(jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0))))


def check_structure(
  found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], source: str, what: str
) -> None:
  """Raises ConversionError naming `source` with every missing key, extra key and shape mismatch."""
  missing = [k for k in expected if k not in found]
  extra = [k for k in found if k not in expected]
  mismatched = [
    f'{k}: expected shape {list(expected[k])}, found {list(found[k])}'
    for k in found
    if k in expected and tuple(found[k]) != tuple(expected[k])
  ]
  problems = []
  if missing:
    problems.append(f'{len(missing)} missing key(s): {listing(missing)}')
  if extra:
    problems.append(f'{len(extra)} unexpected key(s): {listing(extra)}')
  if mismatched:
    problems.append(f'{len(mismatched)} shape mismatch(es): ' + '; '.join(mismatched[:MAX_LISTED]))
  if problems:
    raise ConversionError(f'{source}: not {what}: ' + '. '.join(problems))


def network_kind(model: GSFM) -> str:
  """'single-object' or 'multi-object', for messages."""
  return 'single-object' if model.single_object else 'multi-object'
