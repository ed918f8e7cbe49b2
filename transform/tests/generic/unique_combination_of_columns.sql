{#- Rows whose combination of the given columns occurs more than once (a composite key check, like
    dbt_utils' test of that name, written here because the package hub is not reachable offline).
    When a valid unique index on exactly these columns exists, PostgreSQL already refuses any duplicate, so
    the test asks the catalog for that index instead of grouping every row (~1 s on a year of 20 meters);
    without such an index (views, a dropped index) it groups. NULLs in key columns are the not_null tests'
    business in both cases. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- set columns = combination_of_columns | join(', ') %}
    {%- if unique_index_enforces(model, combination_of_columns) %}
    -- Enforced by a unique index on ({{ columns }}): no duplicate can exist.
    select {{ columns }}, 0 as occurrences from {{ model }} where false
    {%- else %}
    select {{ columns }}, count(*) as occurrences
    from {{ model }}
    group by {{ columns }}
    having count(*) > 1
    {%- endif %}
{% endtest %}
