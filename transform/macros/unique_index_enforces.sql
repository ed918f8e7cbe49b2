{#- Whether `relation` has a valid, non-partial unique index on exactly `columns` (in any order). -#}
{% macro unique_index_enforces(relation, columns) %}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set query -%}
        select exists (
            select 1
            from pg_catalog.pg_index as i
            where i.indrelid = to_regclass({{ sql_literal(relation | string) }})
              and i.indisunique and i.indisvalid and i.indpred is null and i.indexprs is null
              and (
                  select array_agg(a.attname::text order by a.attname::text)
                  from pg_catalog.pg_attribute as a
                  where a.attrelid = i.indrelid and a.attnum = any(i.indkey)
              ) = {{ sql_literal('{' ~ (columns | sort | join(',')) ~ '}') }}::text[]
        )
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0]) }}
{% endmacro %}
