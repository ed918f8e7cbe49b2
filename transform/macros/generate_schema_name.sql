{#- Models go to exactly the schema they configure (`marts`; staging is ephemeral), not `<target schema>_<schema>`,
    because the API and the users query those fixed names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
