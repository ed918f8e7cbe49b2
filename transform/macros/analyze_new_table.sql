{#- Post-hook: ANALYZE a table the run has just (re)built, so the planner has statistics at once. Without
    them (autovacuum may be off or late) it guesses a third of a table matches `loaded_at > ...` and scans
    everything, and an incremental run over one new day costs as much as a full build. Tables that already
    have statistics are left to autovacuum: a one-day merge does not need a new sample. -#}
{% macro analyze_new_table() %}
    {%- if not execute or model.config.materialized not in ('table', 'incremental') -%}
        {{ return('') }}
    {%- endif -%}
    {%- set query -%}
        select coalesce(last_analyze, last_autoanalyze) is null
        from pg_catalog.pg_stat_user_tables
        where relid = to_regclass({{ sql_literal(this) }})
    {%- endset -%}
    {%- set never_analyzed = run_query(query).columns[0].values() -%}
    {%- if never_analyzed and never_analyzed[0] -%}
        analyze {{ this }}
    {%- endif -%}
{% endmacro %}
