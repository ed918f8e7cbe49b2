{#- Data tests over the newly loaded readings only: a build's tests then cost what the new readings cost,
    not the size of the table. The tests of fct_readings filter on var `tested_readings` (dbt_project.yml),
    `where: "{{ var('tested_readings') }}"` in a generic test's config, `and {{ var('tested_readings') }}` in
    a singular test: the rows loaded after the watermark fct_readings' last build started from.

    That watermark is kept by this pre-hook in the table `dbt_test__audit.test_windows` (the schema of dbt's
    test bookkeeping, beside the bookmark test's failing rows), one row per model: the
    newest load time the model held before its last build ('-infinity' after a full refresh, so
    `meltano invoke dbt-postgres:full-refresh` tests every row): the watermark the model's SQL filters on
    (macros/watermark.sql, one max() over the loaded_at index). The job `dbt-full-test`
    (`meltano invoke dbt-postgres:test-all`) sets `tested_readings: 'true'`: every test reads every row. -#}
{% macro remember_watermark() -%}
    {%- set relation = api.Relation.create(database=target.database, schema='dbt_test__audit', identifier='test_windows') -%}
    create schema if not exists {{ relation.schema }};
    create table if not exists {{ relation }} (model text primary key, loaded_at timestamptz not null);
    insert into {{ relation }} (model, loaded_at)
    values ({{ sql_literal(this.identifier) }}, {{ loaded_watermark() if is_incremental() else "'-infinity'::timestamptz" }})
    on conflict (model) do update set loaded_at = excluded.loaded_at
{%- endmacro %}
