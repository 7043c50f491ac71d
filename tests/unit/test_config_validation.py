"""Configuration mistakes are refused at load with one clear line naming the setting and the problem."""
from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import Settings, load_settings
from core.budget import BudgetConfig
from core.cost import Prices
from core.errors import ExpbotError
from core.spec import GpuType, LaunchConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No EXPBOT_* variable of the machine running the tests leaks in."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("EXPBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EXPBOT_DATA_DIR", str(tmp_path / "data"))


def refused(**overrides: object) -> str:
    """load_settings' message for a configuration it refuses."""
    with pytest.raises(ExpbotError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert "internal error" not in message and "Traceback" not in message
    assert "pydantic" not in message and "validation error" not in message.lower()  # no pydantic report
    return message


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "expbot.toml"
    path.write_text(text)
    return path


def refused_file(tmp_path: Path, text: str) -> str:
    """The message for a TOML file load_settings refuses (with the temp directory cut off)."""
    path = toml(tmp_path, text)
    return refused(config_file=path).replace(f"{path}: ", "")


# --- A: environment values of the wrong type or shape -----------------------------------------
@pytest.mark.parametrize(("name", "value", "line"), [
    ("EXPBOT_LOCAL_GPUS", "abc", "EXPBOT_LOCAL_GPUS='abc': expected a whole number"),
    ("EXPBOT_BACKEND", "nonsense", "EXPBOT_BACKEND='nonsense': expected 'local' or 'kubernetes'"),
    ("EXPBOT_RESYNC_INTERVAL_SECONDS", "abc", "EXPBOT_RESYNC_INTERVAL_SECONDS='abc': expected a number"),
    ("EXPBOT_LEADER_ELECTION", "maybe", "EXPBOT_LEADER_ELECTION='maybe': expected true or false"),
    ("EXPBOT_HTTP_PORT", "1.5", "EXPBOT_HTTP_PORT='1.5': expected a whole number"),
])
def test_a_wrongly_typed_env_value_is_one_line_naming_the_variable(monkeypatch, name, value, line):
    monkeypatch.setenv(name, value)
    assert refused() == line


def test_every_bad_setting_gets_its_own_line(monkeypatch):
    monkeypatch.setenv("EXPBOT_LOCAL_GPUS", "abc")
    monkeypatch.setenv("EXPBOT_LEADER_ELECTION", "maybe")
    lines = refused().splitlines()
    assert sorted(lines) == ["EXPBOT_LEADER_ELECTION='maybe': expected true or false",
                             "EXPBOT_LOCAL_GPUS='abc': expected a whole number"]


def test_secret_values_are_never_repeated(monkeypatch):
    message = refused(slack_bot_token=4242424242, slack_signing_secret=5151515151, database_url=6060606060)
    assert "EXPBOT_SLACK_BOT_TOKEN=(hidden): expected a string" in message
    assert "EXPBOT_SLACK_SIGNING_SECRET=(hidden)" in message and "EXPBOT_DATABASE_URL=(hidden)" in message
    assert not re.search("4242|5151|6060", message)


def test_plain_settings_still_raise_pydantic_errors_only_load_settings_translates(monkeypatch):
    monkeypatch.setenv("EXPBOT_LOCAL_GPUS", "abc")
    with pytest.raises(ValidationError):
        Settings()


def test_good_settings_load(monkeypatch):
    monkeypatch.setenv("EXPBOT_LOCAL_GPUS", "2")
    settings = load_settings(backend="kubernetes")
    assert settings.local_gpus == 2 and settings.backend == "kubernetes"
    monkeypatch.delenv("EXPBOT_LOCAL_GPUS")
    assert load_settings().local_gpus is None  # unset: detected from nvidia-smi


# --- B: values of the right type that make no sense ---------------------------------------------
INTERVALS = ["resync_interval_seconds", "relay_interval_seconds", "k8s_resync_seconds", "opencost_refresh_seconds",
             "idle_sample_window_seconds", "idle_check_seconds", "idle_for_minutes"]


@pytest.mark.parametrize("field", INTERVALS)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_intervals_must_be_positive_or_serve_would_spin(monkeypatch, field, value):
    monkeypatch.setenv(f"EXPBOT_{field.upper()}", value)
    assert refused() == f"EXPBOT_{field.upper()}={value!r}: must be more than 0"


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_infinite_or_nan_numbers_are_refused(monkeypatch, value):
    monkeypatch.setenv("EXPBOT_RELAY_INTERVAL_SECONDS", value)
    assert refused() == f"EXPBOT_RELAY_INTERVAL_SECONDS={value!r}: expected a finite number"


def test_lease_timings_must_be_ordered(monkeypatch):
    monkeypatch.setenv("EXPBOT_LEASE_RETRY_SECONDS", "20")
    assert refused() == ("EXPBOT_LEASE_RETRY_SECONDS=20, EXPBOT_LEASE_RENEW_DEADLINE_SECONDS=10, "
                         "EXPBOT_LEASE_DURATION_SECONDS=15: expected retry < renew deadline < duration")
    assert refused(lease_retry_seconds=0) == "EXPBOT_LEASE_RETRY_SECONDS=0: must be more than 0"


def test_backoff_needs_non_negative_base_and_a_cap_at_least_the_base(monkeypatch):
    assert refused(backoff_base_seconds=-1) == "EXPBOT_BACKOFF_BASE_SECONDS=-1: must be at least 0"
    monkeypatch.setenv("EXPBOT_BACKOFF_CAP_SECONDS", "5")
    assert refused() == "EXPBOT_BACKOFF_CAP_SECONDS=5 is less than EXPBOT_BACKOFF_BASE_SECONDS=10"
    assert load_settings(backoff_base_seconds=0, backoff_cap_seconds=0).backoff().cap == timedelta(0)
    assert refused(stop_grace_seconds=-1) == "EXPBOT_STOP_GRACE_SECONDS=-1: must be at least 0"


def test_local_gpus_may_not_be_negative(monkeypatch):
    monkeypatch.setenv("EXPBOT_LOCAL_GPUS", "-1")
    assert refused() == "EXPBOT_LOCAL_GPUS='-1': must be at least 0"
    assert load_settings(local_gpus=0).resolved_local_gpus() == 0


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("65535", True), ("65536", False), ("-1", False)])
def test_http_port_is_a_port_and_0_picks_a_free_one(monkeypatch, value, ok):
    monkeypatch.setenv("EXPBOT_HTTP_PORT", value)
    if ok:
        assert load_settings().http_port == int(value)
    else:
        assert refused().startswith(f"EXPBOT_HTTP_PORT={value!r}: must be at")


def test_log_level_is_a_logging_level_name_in_any_case(monkeypatch):
    monkeypatch.setenv("EXPBOT_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"
    monkeypatch.setenv("EXPBOT_LOG_LEVEL", "LOUD")
    assert refused() == "EXPBOT_LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"


@pytest.mark.parametrize("value", ["noon", "24:00", "12:60", "9", "09:00:00:00", ""])
def test_digest_time_must_be_hh_mm(monkeypatch, value):
    monkeypatch.setenv("EXPBOT_DIGEST_TIME", value)
    assert refused() == f"EXPBOT_DIGEST_TIME={value!r}: expected a time of day as HH:MM, e.g. 09:00"


def test_digest_time_is_normalised_to_what_the_digest_job_parses():
    assert time.fromisoformat(load_settings(digest_time="9:05").digest_time) == time(9, 5)
    assert load_settings(digest_time="23:59").digest_time == "23:59"


@pytest.mark.parametrize("value", ["1,0", "2,x", "-2", "1,inf"])
def test_idle_keep_hours_are_positive_numbers(monkeypatch, value):
    monkeypatch.setenv("EXPBOT_IDLE_KEEP_HOURS", value)
    assert refused().startswith(f"EXPBOT_IDLE_KEEP_HOURS={value!r}: expected comma-separated hours")


def test_idle_threshold_is_a_percentage():
    assert refused(idle_threshold_percent=101) == "EXPBOT_IDLE_THRESHOLD_PERCENT=101: must be at most 100"


def test_hang_timeout_defaults_to_10_minutes_and_0_turns_it_off(monkeypatch):
    assert load_settings().idle_config().hang_timeout == timedelta(minutes=10)
    monkeypatch.setenv("EXPBOT_HANG_TIMEOUT_MINUTES", "0")
    assert load_settings().idle_config().hang_timeout == timedelta(0)
    assert refused(hang_timeout_minutes=-1).startswith("EXPBOT_HANG_TIMEOUT_MINUTES=-1")


def test_an_unknown_time_zone_is_refused_when_the_budgets_load(tmp_path):
    with pytest.raises(ValidationError):
        BudgetConfig(timezone="Mars/Olympus")
    assert BudgetConfig(timezone="Europe/Berlin").timezone == "Europe/Berlin"
    message = refused_file(tmp_path, '[budgets]\ntimezone = "Europe/Berln"\n')
    assert message == ("[budgets] timezone='Europe/Berln': unknown time zone, expected an IANA name like "
                       "'Europe/Berlin'; did you mean Europe/Berlin?")
    assert "Mars/Olympus" in refused_file(tmp_path, '[budgets]\ntimezone = "Mars/Olympus"\n')


# --- C: wrongly shaped TOML ---------------------------------------------------------------------
@pytest.mark.parametrize(("text", "line"), [
    ("[gpu_types]\na100 = 2.5\n",
     "[gpu_types] a100=2.5: expected a table, [gpu_types.a100] with price_per_hour = ..."),
    ('[gpu_types.a100]\nname = "x"\n',
     "[gpu_types.a100] name='x': a GPU type is named by its table, here 'a100'; remove the key"),
    ('[gpu_types.a100]\nprice_per_hour = "cheap"\n', "[gpu_types.a100] price_per_hour='cheap': expected a number"),
    ("launch = 5\n", "launch=5: expected a table, [launch]"),
    ('[budgets]\napproval_ttl_hours = "soon"\n',
     "[budgets] approval_ttl_hours='soon': expected a number of hours, greater than 0"),
    ('[launch]\ndefault_max_runtime = "12h"\n',
     "[launch] default_max_runtime='12h': expected a number of seconds, greater than 0"),
    ("[launch]\ndefault_max_runtime = 1e300\n", "[launch] default_max_runtime=1e+300: is too large"),
    ("[budgets]\nprojects = 5\n", "[budgets] projects=5: expected a table"),
    ("[kubernetes]\ngpu_tolerations = [{ key = 1 }]\n", "[kubernetes] gpu_tolerations[0].key=1: expected a string"),
    ("[kubernetes]\nttl_after_finished = -1\n",
     "[kubernetes] ttl_after_finished=-1: expected a number of seconds, 0 or more"),
])
def test_a_wrongly_shaped_table_names_the_file_and_key(tmp_path, text, line):
    path = toml(tmp_path, text)
    assert refused(config_file=path) == f"{path}: {line}"


def test_a_secret_in_the_file_is_refused_and_not_repeated(tmp_path):
    message = refused_file(tmp_path, "[kubernetes]\nreport_secret = '7373737373'\n")
    assert message == ("unknown key 'report_secret' in [kubernetes]; set EXPBOT_REPORT_SECRET instead "
                       "(secrets never come from the file)")


def test_every_table_is_checked_at_load_not_at_first_use(tmp_path):
    path = toml(tmp_path, "[kubernetes]\npvc_sise = '1Gi'\n")
    settings = Settings(config_file=path)  # the local backend never builds the Kubernetes config...
    with pytest.raises(ExpbotError, match="unknown key 'pvc_sise' in \\[kubernetes\\]; did you mean pvc_size"):
        settings.check_config_file()  # ...but a mistake in it is still refused at start


@pytest.mark.parametrize(("make", "words"), [
    (lambda p: p.mkdir(), "is a directory, expected a TOML file"),
    (lambda p: p.write_bytes(b"\xff\xfe[launch]\n"), "the configuration file is not UTF-8 text (byte 0)"),
    (lambda p: None, "the configuration file does not exist"),
    (lambda p: p.write_text("[launch\n"), "the configuration file is not valid TOML: "),
])
def test_an_unreadable_file_is_one_line_naming_it(tmp_path, make, words):
    path = tmp_path / "expbot.toml"
    make(path)
    assert refused(config_file=path).startswith(f"EXPBOT_CONFIG_FILE={str(path)!r}: {words}")


def test_a_file_without_permission_is_one_line(tmp_path, monkeypatch):
    path = toml(tmp_path, "[launch]\n")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)  # the tests may run as root, who reads anything
    expected = f"EXPBOT_CONFIG_FILE={str(path)!r}: permission denied reading the configuration file"
    assert refused(config_file=path) == expected


# --- D: values that make no sense, and unknown keys ----------------------------------------------
def test_a_negative_gpu_price_is_refused(tmp_path):
    with pytest.raises(ValidationError):
        GpuType(name="a100", price_per_hour=-1)
    assert refused_file(tmp_path, "[gpu_types.a100]\nprice_per_hour = -2.5\n") == (
        "[gpu_types.a100] price_per_hour=-2.5: must be at least 0")
    assert refused_file(tmp_path, "[gpu_types.a100]\nprice_per_hour = nan\n") == (
        "[gpu_types.a100] price_per_hour=nan: expected a finite number")


def test_launch_limits_may_not_be_negative(tmp_path):
    assert refused_file(tmp_path, "[launch]\nmax_gpus = -1\n") == "[launch] max_gpus=-1: must be at least 0"
    assert refused_file(tmp_path, "[launch]\nmax_sweep_size = 0\n") == "[launch] max_sweep_size=0: must be at least 1"
    assert refused_file(tmp_path, "[launch]\ndefault_max_restarts = -1\n") == (
        "[launch] default_max_restarts=-1: must be at least 0")
    with pytest.raises(ValidationError):
        LaunchConfig(default_gpus=-1)


def test_negative_budgets_and_thresholds_are_refused(tmp_path):
    message = refused_file(tmp_path, "[budgets]\nprojects = { nlp = -5 }\nusers = { bob = inf }\n"
                                     "default_user_limit = -1\nalert_thresholds = [-1, 50]\n")
    assert message.splitlines() == [
        "[budgets] projects.nlp=-5: must be at least 0",
        "[budgets] users.bob=inf: expected a finite number",
        "[budgets] default_user_limit=-1: must be at least 0",
        "[budgets] alert_thresholds[0]=-1: must be more than 0",
    ]
    assert refused_file(tmp_path, "[budgets]\napproval_ttl_hours = 0\n") == (
        "[budgets] approval_ttl_hours=0: expected a number of hours, greater than 0")


def test_negative_cpu_and_memory_prices_are_refused(tmp_path):
    message = refused_file(tmp_path, "[prices]\ncpu_per_hour = -0.1\nmemory_gib_per_hour = -1\n")
    assert message.splitlines() == ["[prices] cpu_per_hour=-0.1: must be at least 0",
                                    "[prices] memory_gib_per_hour=-1: must be at least 0"]
    with pytest.raises(ValidationError):
        Prices(cpu_per_hour=-1)


@pytest.mark.parametrize(("text", "line"), [
    ("[launch]\nmax_gpu = 8\n", "unknown key 'max_gpu' in [launch]; did you mean max_gpus?"),
    ("[lanch]\nmax_gpus = 8\n", "unknown section [lanch]; did you mean [launch]?"),
    ("[gpu_types.a100]\nprice = 2.5\n", "unknown key 'price' in [gpu_types.a100]; did you mean price_per_hour?"),
    ("[budgets]\napproval_ttl = 24\n", "unknown key 'approval_ttl' in [budgets]; did you mean approval_ttl_hours?"),
    ("[prices]\ncpu_price = 1\n", "unknown key 'cpu_price' in [prices]; did you mean cpu_per_hour?"),
    ("[kubernetes]\nstop_grace = 5\n",
     "unknown key 'stop_grace' in [kubernetes]; set EXPBOT_STOP_GRACE_SECONDS instead"),
    ("[launch]\nzzz = 1\n", "unknown key 'zzz' in [launch]"),
])
def test_unknown_keys_and_sections_are_refused_with_a_suggestion(tmp_path, text, line):
    assert refused_file(tmp_path, text) == line


@pytest.mark.parametrize(("text", "line"), [
    ("[launch]\ndefault_gpus = 4\nmax_gpus = 2\n", "[launch] default_gpus=4 is more than max_gpus=2"),
    ("[launch]\nmax_runtime_limit = 3600\n",
     "[launch] default_max_runtime (86400 s) is more than max_runtime_limit (3600 s)"),
    ('[launch]\nprojects = ["nlp"]\n', ("[launch] default_project='default' is not one of projects (nlp); "
                                        "launches without --project would bypass the list")),
    ('[launch]\ndefault_gpu_type = "a10"\n[gpu_types.a100]\n',
     "[launch] default_gpu_type='a10' is not a GPU type of the catalog (a100)"),
])
def test_launch_settings_that_contradict_each_other_are_refused(tmp_path, text, line):
    assert refused_file(tmp_path, text) == line


# --- what ships must still load -----------------------------------------------------------------
def shipped_configs() -> list[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text()
    found = [(f"README.md block {n}", block) for n, block in enumerate(re.findall(r"```toml\n(.*?)```", readme, re.S))]
    found += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted(ROOT.glob("deploy/**/*.toml"))]
    found += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted(ROOT.glob("examples/**/*.toml"))]
    found.append(("integration fixture", "[budgets]\nprojects = { nlp = 40.0 }\napproval_ttl_hours = 0.0001\n"))
    return found


@pytest.mark.parametrize(("where", "text"), shipped_configs(), ids=lambda v: v if "\n" not in v else "")
def test_the_shipped_configurations_still_load(tmp_path, where, text):
    settings = load_settings(config_file=toml(tmp_path, text), backend="kubernetes")
    assert settings.launch_config().gpu_catalog


def test_the_kubernetes_test_harness_config_still_loads(tmp_path):
    from tests.k8s.harness import write_config

    path = write_config(tmp_path / "expbot.toml", pod_labels={"a": "b"}, pod_annotations={"c": "d"})
    config = load_settings(config_file=path, backend="kubernetes").k8s_config()
    assert config.max_gpus_per_node == 8 and config.image_pull_grace == timedelta(seconds=5)


@pytest.mark.parametrize(("text", "says"), [
    ('[budgets]\nprojects = { NLP = 100.0 }\n', "[budgets] projects.NLP: project 'NLP' is not allowed"),
    ('[budgets]\nusers = { "ana smith" = 100.0 }\n', "[budgets] users.ana smith: user 'ana smith' is not a user name"),
    ('[launch]\nprojects = ["nlp", "default"]\n[budgets]\nprojects = { vision = 100.0 }\n',
     "[budgets] projects.vision: project 'vision' is not a known project"),
])
def test_a_budget_in_the_file_that_could_never_apply_is_refused(tmp_path, text, says):
    assert says in refused_file(tmp_path, text)


def test_budgets_in_the_file_under_names_launches_carry_still_load(tmp_path):
    config = load_settings(config_file=toml(tmp_path, '[budgets]\nprojects = { nlp = 1.0 }\nusers = { ana = 2.0, U012AB = 3.0 }\n'))
    assert config.budget_config().users == {"ana": 2.0, "U012AB": 3.0}
