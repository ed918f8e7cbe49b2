-- A local day cannot receive more distinct 15-minute intervals than it has, and the counts must add up.
select muid, day, expected_intervals, received_intervals, missing_intervals
from {{ ref('fct_meter_completeness_daily') }}
where received_intervals > expected_intervals
    or missing_intervals <> expected_intervals - received_intervals
    or expected_intervals not in (92, 96, 100)
