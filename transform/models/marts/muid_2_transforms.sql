{{ config(materialized='view') }}

{{ meter_transforms('muid_2') }}
