"""Checking a stage CLI's config against the pipeline's schema, so a direct CLI call fails like the pipeline.

The schema is ``workflow/schemas/config.schema.yaml`` (the one source of types, ranges and defaults;
``config.schema.yaml`` beside this module links to it). Snakemake validates the whole config before any
job runs; a stage CLI gets one section (or a few keys of several sections, as its rule assembles them)
and checks each key with :func:`check_config` before work starts: an unknown key, a wrong type or an
out-of-range value is a :class:`~repro.common.errors.ConfigError` naming the key, e.g.
``config key 'detect.iterations': -3 is less than the minimum of 1``.
"""

from __future__ import annotations

import copy
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


@functools.lru_cache(maxsize=1)
def _validator():
    """A validator of the whole schema; ``evolve(schema=part)`` checks one part, its ``$ref``s resolved in the whole."""
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


def section_schema(section: str) -> dict[str, Any]:
    """The schema of a dotted section path, e.g. ``"graph.features"`` (``""``: the whole config)."""
    node = schema()
    for part in filter(None, section.split(".")):
        try:
            node = _resolve_ref(node["properties"][part])
        except KeyError:
            raise KeyError(f"the config schema has no section {section!r}") from None
    return node


def section_defaults(section: str) -> dict[str, Any]:
    """Every default of a section, nested objects included: what an empty section means."""
    return with_defaults({}, section)


def check_config(cfg: Mapping[str, Any], sections: str | Iterable[str], *, ignore: Iterable[str] = ()) -> None:
    """Validate every key of ``cfg`` against the first of ``sections`` whose schema defines it.

    ``ignore`` lists keys a stage adds itself (not config keys). Raises ConfigError naming the first bad
    key (``section.key.subkey``) with the schema's message; unknown keys are errors, as in the pipeline.
    """
    sections = [sections] if isinstance(sections, str) else list(sections)
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config of {sections[0]!r} must be a mapping, got {type(cfg).__name__}")
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
        errors = sorted(_validator().evolve(schema=prop).iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            name = ".".join(filter(None, [section, str(key), *(str(p) for p in err.absolute_path)]))
            if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
                known = err.schema.get("properties", {})
                extra = sorted(k for k in err.instance if k not in known)
                if extra and known:
                    raise ConfigError(f"config key '{name}.{extra[0]}': unknown key (known: {', '.join(known)})")
            raise ConfigError(f"config key '{name}': {err.message}")


def _resolve_ref(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local ``$ref`` (``#/...``) into the whole schema; other nodes come back as they are."""
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"config schema: only local $refs are supported, got {ref!r}")
        target: Any = schema()
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _fill(value: Any, node: Mapping[str, Any]) -> Any:
    """``value`` with the schema's defaults filled in, recursively, for every key it does not set.

    A missing key gets its ``default``; a missing nested object that the schema spells out in place
    (``properties`` without a ``$ref``) is created and filled, so a partial section gets the same values
    as the pipeline; a map of named entries (``additionalProperties`` with a schema) fills each entry.
    """
    node = _resolve_ref(node)
    if not isinstance(value, dict):
        return value
    out = dict(value)
    props = node.get("properties", {})
    for key, prop in props.items():
        if key in out:
            out[key] = _fill(out[key], prop)
        elif "default" in prop:
            out[key] = _fill(copy.deepcopy(prop["default"]), prop)
        elif "properties" in prop and "$ref" not in prop:
            out[key] = _fill({}, prop)
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        for key in out.keys() - props.keys():
            out[key] = _fill(out[key], extra)
    return out


def with_defaults(cfg: Mapping[str, Any], section: str) -> dict[str, Any]:
    """``cfg`` (a section of the config, e.g. ``"detect"``) completed from the schema's defaults.

    The schema is the one source of defaults: a stage run outside Snakemake with a partial section gets
    exactly the values the pipeline would give it.
    """
    return _fill(dict(cfg), section_schema(section))


def stage_config(cfg: Mapping[str, Any], sections: str | Iterable[str], *, ignore: Iterable[str] = ()) -> dict[str, Any]:
    """Check ``cfg`` against ``sections`` (see :func:`check_config`), then fill in the first section's defaults.

    This is what every stage CLI calls on its ``--config`` before any work. Keys in ``ignore`` (read by the
    rule, not by the stage) are dropped. Keys a rule adds from other sections (``sections[1:]``) are checked
    but not completed: a stage that reads one of them takes its default from :func:`section_defaults`.
    """
    check_config(cfg, sections, ignore=ignore)
    own = sections if isinstance(sections, str) else next(iter(sections))
    skipped = set(ignore)
    filled = with_defaults({k: v for k, v in cfg.items() if k not in skipped}, own)
    return {k: v for k, v in filled.items() if k not in skipped}


def borrowed(cfg: Mapping[str, Any], section: str, keys: Iterable[str]) -> dict[str, Any]:
    """Keys another section lends a stage (its rule copies them in), each defaulting to ``section``'s default."""
    defaults = section_defaults(section)
    return {k: cfg.get(k, defaults[k]) for k in keys}


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
