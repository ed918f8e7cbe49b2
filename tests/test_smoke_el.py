import pytest

pytestmark = pytest.mark.e2e


def test_meltano_el_loads_both_streams(pipeline):
    pipeline.meltano("run", "tap-exnaton", "target-postgres")
    assert pipeline.scalar("select count(*) from raw.muid_1") == 3 * 96
    assert pipeline.scalar("select count(*) from raw.muid_2") == 3 * 96
