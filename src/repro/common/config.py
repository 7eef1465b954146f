"""Checking a stage CLI's config against the pipeline's schema, so a direct CLI call fails like the pipeline.

The schema is ``workflow/schemas/config.schema.yaml`` (the one source of types, ranges and defaults;
``config.schema.yaml`` beside this module links to it). Snakemake validates the whole config before any
job runs; a stage CLI gets one section (or a few keys of several sections, as its rule assembles them)
and checks each key with :func:`check_config` before work starts: an unknown key, a wrong type or an
out-of-range value is a :class:`~repro.common.errors.ConfigError` naming the key, e.g.
``config key 'detect.iterations': -3 is less than the minimum of 1``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from repro.common.errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The pipeline's config schema (parsed once)."""
    import yaml

    if not SCHEMA_PATH.exists():
        raise FileNotFoundError(f"config schema not found: {SCHEMA_PATH} (it links to workflow/schemas/)")
    return yaml.safe_load(SCHEMA_PATH.read_text())


SCHEMA_URI = "urn:repro:config-schema"


@functools.lru_cache(maxsize=1)
def _registry():
    """The schema as a resource that ``$ref`` can point into (its own refs resolve inside it)."""
    from referencing import Registry, Resource

    return Registry().with_resource(SCHEMA_URI, Resource.from_contents(schema()))


def section_schema(section: str) -> dict[str, Any]:
    """The schema of a dotted section path, e.g. ``"graph.features"`` (``""``: the whole config)."""
    node = schema()
    for part in filter(None, section.split(".")):
        try:
            node = node["properties"][part]
        except KeyError:
            raise KeyError(f"the config schema has no section {section!r}") from None
    return node


def section_defaults(section: str) -> dict[str, Any]:
    """The schema's defaults of a section's keys (one level; nested objects keep their own defaults)."""
    props = section_schema(section).get("properties", {})
    return {k: v["default"] for k, v in props.items() if "default" in v}


def check_config(cfg: Mapping[str, Any], sections: str | Iterable[str], *, ignore: Iterable[str] = ()) -> None:
    """Validate every key of ``cfg`` against the first of ``sections`` whose schema defines it.

    ``ignore`` lists keys a stage adds itself (not config keys). Raises ConfigError naming the first bad
    key (``section.key.subkey``) with the schema's message; unknown keys are errors, as in the pipeline.
    """
    import jsonschema

    sections = [sections] if isinstance(sections, str) else list(sections)
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config of {sections[0]!r} must be a mapping, got {type(cfg).__name__}")
    registry = _registry()
    skipped = set(ignore)
    for key, value in cfg.items():
        if key in skipped:
            continue
        for section in sections:
            prop = section_schema(section).get("properties", {}).get(key)
            if prop is not None:
                break
        else:
            where = ", ".join(s or "the top level" for s in sections)
            raise ConfigError(f"config key '{'.'.join(filter(None, (sections[0], str(key))))}': unknown key for this"
                              f" stage (see {where} in workflow/schemas/config.schema.yaml)")
        pointer = "".join(f"/properties/{part}" for part in [*filter(None, section.split(".")), key])
        # refs inside a section point into the whole schema: validate through a $ref into it
        validator = jsonschema.Draft202012Validator({"$ref": f"{SCHEMA_URI}#{pointer}"}, registry=registry)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            name = ".".join(filter(None, [section, str(key), *(str(p) for p in err.absolute_path)]))
            if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
                known = err.schema.get("properties", {})
                extra = sorted(k for k in err.instance if k not in known)
                if extra and known:
                    raise ConfigError(f"config key '{name}.{extra[0]}': unknown key (known: {', '.join(known)})")
            raise ConfigError(f"config key '{name}': {err.message}")


def merged_config(*paths: str | Path) -> dict[str, Any]:
    """The YAML files at ``paths`` merged in order, each over the previous (nested mappings key by key, as
    Snakemake merges ``--configfile`` over the Snakefile's ``configfile``), e.g. ``config.yaml`` then
    ``workflow/configs/full.yaml``."""
    import yaml

    def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
        return out

    cfg: dict[str, Any] = {}
    for path in paths:
        cfg = merge(cfg, yaml.safe_load(Path(path).read_text()) or {})
    return cfg
