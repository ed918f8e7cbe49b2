{#- Energy direction of an OBIS code: 1-0:1.29.0 is active energy drawn from the grid, 1-0:2.29.0 fed in. -#}
{% macro obis_direction(obis_code) -%}
    case {{ obis_code }}
        when '0100011D00FF' then 'import'
        when '0100021D00FF' then 'export'
        else 'unknown'
    end
{%- endmacro %}
