"""The user feature fields: what each is, how it is encoded, how big its id space is.

`define_fields` turns the conf and the users table's attributes into `FieldDef`s; the
job writes them as the `fields` table (name, kind, encoding, source, vocab_size), and
training and scoring read them back with `read_fields`. Fields are ordered by name
everywhere (the table, `read_fields`, the columns of `user_features`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping, Sequence

import pyarrow as pa

from core import delta
from core.config import BEHAVIOUR_FIELDS, FeaturesConf
from core.contract import ContractError, UserAttributes
from features import vocabulary as vocab
from features.samples import SAMPLE_COLUMNS

if TYPE_CHECKING:
    from mvke.fields import FieldSpec

Kind = Literal["single", "multi"]
Encoding = Literal["vocab", "bucket"]
FIELDS_SCHEMA = pa.schema([("name", pa.string()), ("kind", pa.string()), ("encoding", pa.string()),
                           ("source", pa.string()), ("vocab_size", pa.int32()), ("definition", pa.string())])
# The model's batch keys and weights suffix (mvke.fields, which imports torch through its
# package; tests check these copies against it).
WEIGHTS_SUFFIX = "_weights"
MODEL_KEYS = ("tag", "tag_category", "click", "conversion")
# training_examples puts every field beside the samples' columns, so those are taken too.
RESERVED_NAMES = tuple(dict.fromkeys((*SAMPLE_COLUMNS, vocab.TAG, vocab.CATEGORY, *MODEL_KEYS)))


@dataclass(frozen=True)
class FieldDef:
    """One field. `vocabulary` names the vocabulary of a vocab field, `edges` a bucket field's edges."""

    name: str
    kind: Kind
    encoding: Encoding
    source: str
    vocabulary: str | None = None
    edges: tuple[float, ...] = ()
    event_type: str | None = None  # the events a behaviour list counts

    @property
    def definition(self) -> str:
        """What the field's ids mean: its bucket edges, or the vocabulary that numbers its values.
        Every model records it (training.json); scoring refuses a field whose definition changed."""
        if self.encoding == "bucket":
            return "bucket edges " + json.dumps([float(edge) for edge in self.edges])
        return f"vocabulary {self.vocabulary}"

    def vocab_size(self, vocabulary_sizes: Mapping[str, int]) -> int:
        """Ids are 0 .. vocab_size - 1: bucket b of k edges is b + 2 (b = 0 .. k)."""
        if self.encoding == "bucket":
            return len(self.edges) + vocab.FIRST_ID + 1
        return max(vocabulary_sizes.get(self.vocabulary, vocab.FIRST_ID), vocab.FIRST_ID)


def behaviour_field(name: str, conf: FeaturesConf) -> FieldDef:
    """The definition of one of `core.config.BEHAVIOUR_FIELDS`."""
    definitions = {
        "clicked_tags": FieldDef("clicked_tags", "multi", "vocab", "events.click.tag", vocabulary=vocab.TAG,
                                 event_type="click"),
        "converted_tags": FieldDef("converted_tags", "multi", "vocab", "events.conversion.tag", vocabulary=vocab.TAG,
                                   event_type="conversion"),
        "clicked_categories": FieldDef("clicked_categories", "multi", "vocab", "events.click.category",
                                       vocabulary=vocab.CATEGORY, event_type="click"),
        "impressions": FieldDef("impressions", "single", "bucket", "events.impression.count",
                                edges=conf.activity_buckets),
        "clicks": FieldDef("clicks", "single", "bucket", "events.click.count", edges=conf.activity_buckets),
        "conversions": FieldDef("conversions", "single", "bucket", "events.conversion.count",
                                edges=conf.activity_buckets),
        "active_days": FieldDef("active_days", "single", "bucket", "events.active_days", edges=conf.activity_buckets),
        "click_rate": FieldDef("click_rate", "single", "bucket", "events.click_rate", edges=conf.rate_buckets),
    }
    return definitions[name]


def define_fields(attributes: UserAttributes, conf: FeaturesConf) -> list[FieldDef]:
    """All fields, sorted by name: user attributes, then the conf's behaviour fields.

    Raises ContractError when an attribute's name clashes with a behaviour field, a
    reserved column or batch key, or a multi field's weights column, and when
    `attribute_buckets` names anything but a numeric attribute (its edges would go unused).
    """
    behaviour = [behaviour_field(name, conf) for name in conf.behaviour_fields]
    taken = {*RESERVED_NAMES, *BEHAVIOUR_FIELDS, *(name + WEIGHTS_SUFFIX for name in BEHAVIOUR_FIELDS)}
    clashes = sorted(set(attributes.categorical + attributes.numeric) & taken)
    if clashes:
        raise ContractError(f"raw table users: attribute column(s) {clashes} clash with feature or reserved names; "
                            f"rename them or list them in features.ignore_attributes")
    unused = sorted(set(conf.attribute_buckets) - set(attributes.numeric))
    if unused:
        raise ContractError(f"features.attribute_buckets names {unused}, which the users table has no numeric "
                            f"attribute for (numeric attributes: {list(attributes.numeric)})")
    users = [FieldDef(name, "single", "vocab", f"users.{name}", vocabulary=name) for name in attributes.categorical]
    users += [FieldDef(name, "single", "bucket", f"users.{name}",
                       edges=conf.attribute_buckets.get(name, conf.numeric_buckets)) for name in attributes.numeric]
    return sorted([*users, *behaviour], key=lambda f: f.name)


def fields_table(fields: Sequence[FieldDef], vocabulary_sizes: Mapping[str, int]) -> pa.Table:
    """The `fields` table (FIELDS_SCHEMA), one row per field; a small driver-side table."""
    rows = [(f.name, f.kind, f.encoding, f.source, f.vocab_size(vocabulary_sizes), f.definition) for f in fields]
    return pa.Table.from_pylist([dict(zip(FIELDS_SCHEMA.names, row)) for row in rows], schema=FIELDS_SCHEMA)


def read_field_definitions(uri: str, version: int | None = None) -> dict[str, str]:
    """{field: definition} of the `fields` table at `uri`; {} for a table written before it had them."""
    table = delta.read_arrow(uri, version)
    if "definition" not in table.column_names:
        return {}
    return {r["name"]: r["definition"] for r in table.select(["name", "definition"]).to_pylist()}


def read_fields(uri: str, version: int | None = None) -> list[FieldSpec]:
    """The `fields` table at `uri` (at `version`, default the latest) as the model's FieldSpecs, sorted by name."""
    from mvke.fields import FieldSpec

    table = delta.read_arrow(uri, version, columns=["name", "kind", "vocab_size"]).to_pylist()
    return [FieldSpec(r["name"], r["kind"], int(r["vocab_size"])) for r in sorted(table, key=lambda r: r["name"])]
