{#- Rows whose combination of the given columns occurs more than once (a composite key check, like
    dbt_utils' test of that name, written here because the package hub is not reachable offline). For
    relations no constraint can hold to a key: views, and tables without a contract. A table with an
    enforced contract declares its key as a primary_key constraint instead, which PostgreSQL enforces.
    NULLs in key columns are the not_null tests' business. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- set columns = combination_of_columns | join(', ') %}
    select {{ columns }}, count(*) as occurrences
    from {{ model }}
    group by {{ columns }}
    having count(*) > 1
{% endtest %}
