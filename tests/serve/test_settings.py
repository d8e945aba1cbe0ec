import subprocess
from pathlib import Path

import pytest

from gen3d.serve.settings import ENV_VARIABLES, Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_design() -> None:
    s = Settings.from_env({})
    assert s.backend == "silhouette"
    assert s.model_dir == Path("/opt/ml/model")
    assert s.port == 8080
    assert s.device == "auto"
    assert s.warmup is True
    assert (s.max_queue, s.max_waiting) == (32, 32)


def test_values_are_parsed_and_normalised() -> None:
    s = Settings.from_env(
        {
            "GEN3D_BACKEND": "PROXY",
            "SAGEMAKER_BIND_TO_PORT": "8099",
            "GEN3D_MAX_BATCH_DELAY_MS": "2.5",
            "GEN3D_WARMUP": "off",
            "GEN3D_MODEL_DIR": "/tmp/m",
            "GEN3D_MAX_BATCH_SIZE": " 4 ",
        }
    )
    assert (s.backend, s.port, s.max_batch_delay_ms, s.warmup) == ("proxy", 8099, 2.5, False)
    assert s.model_dir == Path("/tmp/m") and s.max_batch_size == 4


def test_empty_values_mean_default() -> None:
    assert Settings.from_env({"GEN3D_BACKEND": ""}).backend == "silhouette"


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("GEN3D_BACKEND", "ne rf", "backend name"),  # unknown names: test_capacity.py
        ("SAGEMAKER_BIND_TO_PORT", "80a", "integer"),
        ("SAGEMAKER_BIND_TO_PORT", "70000", "between"),
        ("GEN3D_WARMUP", "maybe", "1/0"),
        ("GEN3D_MAX_BATCH_DELAY_MS", "-1", "between"),
        ("GEN3D_PRECISION", "int4", "one of"),
    ],
)
def test_invalid_values_name_the_variable(var: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({var: value})
    message = str(info.value)
    assert message.startswith(f"{var}=") and says in message
    assert "\n" not in message


def test_as_env_round_trips() -> None:
    s = Settings.from_env(
        {"GEN3D_BACKEND": "proxy", "GEN3D_WARMUP": "0", "MODEL_SERVER_WORKERS": "3"}
    )
    assert set(s.as_env()) == set(ENV_VARIABLES)
    assert Settings.from_env(s.as_env()) == s


def test_server_refuses_to_start_with_one_clear_line() -> None:
    result = subprocess.run(
        [str(REPO / "container" / "serve"), "serve"],
        env={"PATH": "/usr/bin:/bin", "GEN3D_MAX_QUEUE": "lots"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["gen3d: invalid setting GEN3D_MAX_QUEUE='lots': must be an integer"]


def test_train_is_refused() -> None:
    result = subprocess.run(
        [str(REPO / "container" / "serve"), "train"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1 and "this image only serves" in result.stderr


def test_ui_hosts_are_a_list_of_names() -> None:
    settings = Settings.from_env({"GEN3D_UI_HOSTS": "DevBox.lan, 10.0.0.5,"})
    assert settings.ui_hosts == ("devbox.lan", "10.0.0.5")
    assert Settings.from_env(settings.as_env()).ui_hosts == settings.ui_hosts
    with pytest.raises(SettingsError, match="GEN3D_UI_HOSTS"):
        Settings.from_env({"GEN3D_UI_HOSTS": "evil.example/path"})
