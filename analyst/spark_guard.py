"""Spark's own reading of an analyst query: refuse anything but a plain query, before it runs.

`analyst.sqltext.check_read_only` reads the text with a small scanner; this module asks
Spark's parser (the one `spark.sql` uses) what the text is, so the check cannot disagree
with Spark about where a string or a comment ends:

- every operator of the parsed plan must be a query operator (`QUERY_OPERATORS`): no
  command, no write, no `TRANSFORM ... USING` script, no `IDENTIFIER(...)` table name;
- no function may call Java methods by name (`reflect`, `java_method`, `try_reflect`) or
  have its name computed at analysis (`IDENTIFIER(...)(...)`);
- after analysis (which resolves names but runs nothing), the plan again holds no command,
  script transformation or reflection call.

`analyst_session` makes the session the queries run on: its own SQL settings and temp
views (the caller's session is left as it was), no SQL on files (text.`/etc/passwd`)
and no `${...}` substitution in the text.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from analyst.sqltext import ReadOnlyError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The settings of the analyst session: SQL cannot name files, and `${env:...}` / `${spark.conf}`
# in the text (even inside a string) stays text instead of being replaced by the value.
ANALYST_SETTINGS = {
    "spark.sql.runSQLOnFiles": "false",
    "spark.sql.variable.substitute": "false",
    "spark.sql.parser.escapedStringLiterals": "false",
    # DuckDB runs in UTC (analyst.catalog); so does Spark here, whatever spark.extra gave the context:
    # dates of timestamps, hour() and date_trunc() then agree between the engines.
    "spark.sql.session.timeZone": "UTC",
}

# Logical operators a parsed SELECT/WITH query is made of (simple class names, Spark 4.0).
QUERY_OPERATORS = frozenset({
    "Project", "Filter", "Aggregate", "Join", "LateralJoin", "Sort", "GlobalLimit", "LocalLimit", "Offset",
    "Tail", "Distinct", "Deduplicate", "Union", "Intersect", "Except", "SubqueryAlias", "UnresolvedRelation",
    "OneRowRelation", "UnresolvedWith", "WithWindowDefinition", "UnresolvedInlineTable", "ResolvedInlineTable",
    "LocalRelation", "UnresolvedTableValuedFunction", "UnresolvedTVFAliases", "Generate", "Pivot", "Unpivot",
    "Sample", "RepartitionByExpression", "Repartition", "RebalancePartitions", "UnresolvedHint",
    "UnresolvedSubqueryColumnAliases", "UnresolvedHaving", "Window", "Expand", "Range",
})
REFLECTION_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})
# Expression and operator classes (simple names) that run code; refused wherever they appear.
FORBIDDEN_CLASSES = {
    "CallMethodViaReflection": "reflect",
    "TryReflect": "reflect",
    "ExpressionWithUnresolvedIdentifier": "IDENTIFIER function name",
    "ScriptTransformation": "TRANSFORM USING",
}

_PACKAGE = "org.apache.spark.sql."


def analyst_session(spark: "SparkSession") -> "SparkSession":
    """A new session on the same Spark context with `ANALYST_SETTINGS`; temp views and settings stay in it."""
    session = spark.newSession()
    for key, value in ANALYST_SETTINGS.items():
        session.conf.set(key, value)
    return session


def check_plan(spark: "SparkSession", sql: str) -> None:
    """Raise `ReadOnlyError` unless Spark parses `sql` into a plain query with no code-running parts."""
    _check_settings(spark)
    parsed = spark._jsparkSession.sessionState().sqlParser().parsePlan(sql)
    for node, is_plan in _walk(spark, parsed):
        name = _simple_name(node)
        _refuse_forbidden_class(name)
        if is_plan and name not in QUERY_OPERATORS:
            raise ReadOnlyError(name, f"refused: Spark reads the query as {name}, not as a plain query; only a "
                                      f"single read-only SELECT or WITH query is allowed")
        if name == "UnresolvedFunction":
            function = node.nameParts().last().lower()
            if function in REFLECTION_FUNCTIONS:
                raise ReadOnlyError(function.upper(), f"refused: the query calls {function}, which runs Java "
                                                      f"methods; only a read-only query is allowed")


def analyzed_query(spark: "SparkSession", sql: str) -> "DataFrame":
    """`spark.sql(sql)` of a query that passed `check_plan`, its analyzed plan checked again (nothing has run yet)."""
    frame = spark.sql(sql)
    command = spark._jvm.java.lang.Class.forName("org.apache.spark.sql.catalyst.plans.logical.Command")
    for node, is_plan in _walk(spark, frame._jdf.queryExecution().analyzed()):
        name = _simple_name(node)
        _refuse_forbidden_class(name)
        if is_plan and command.isInstance(node):
            raise ReadOnlyError(name, f"refused: the query holds the command {name}; only a read-only query "
                                      f"is allowed")
    return frame


def _check_settings(spark: "SparkSession") -> None:
    wrong = {k: spark.conf.get(k, None) for k, v in ANALYST_SETTINGS.items() if spark.conf.get(k, None) != v}
    if wrong:
        raise ValueError(f"the analyst queries need a session from analyst_session(); this one has {wrong}")


def _walk(spark: "SparkSession", root) -> Iterator[tuple[object, bool]]:
    """Every operator and expression under `root` (CTE definitions and subqueries included), with is-a-plan."""
    plan_class = spark._jvm.java.lang.Class.forName("org.apache.spark.sql.catalyst.plans.QueryPlan")
    pending = [root]
    while pending:
        node = pending.pop()
        is_plan = plan_class.isInstance(node)
        yield node, is_plan
        if is_plan:
            pending.extend(_items(node.expressions()))
        pending.extend(_items(node.children()))
        pending.extend(x for x in _items(node.innerChildren()) if x is not None)


def _items(seq) -> list:
    return [seq.apply(i) for i in range(seq.length())]


def _simple_name(node) -> str:
    name = node.getClass().getName()
    if not name.startswith(_PACKAGE):
        raise ReadOnlyError(name, f"refused: the query plan holds {name}, which is not part of Spark SQL")
    return name.rsplit(".", 1)[-1].split("$", 1)[0]


def _refuse_forbidden_class(name: str) -> None:
    for forbidden, kind in FORBIDDEN_CLASSES.items():
        if name.startswith(forbidden):
            raise ReadOnlyError(kind, f"refused: the query holds {name} ({kind}), which runs code; only a "
                                      f"read-only query is allowed")
