{#- A value from a dbt var as a quoted SQL string literal. -#}
{% macro sql_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
