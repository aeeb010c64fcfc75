"""README's YAML reference and device list are exactly what the code generates."""

from pathlib import Path

from automc.report import config_reference as ref

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_holds_the_generated_yaml_reference():
    block = ref.between(README.read_text(), ref.REFERENCE_MARKERS)
    assert block is not None, "README.md lacks the config-reference markers"
    assert block == ref.render_reference(), "regenerate: python -m automc.report.config_reference --write README.md"


def test_readme_holds_the_generated_device_list():
    block = ref.between(README.read_text(), ref.DEVICES_MARKERS)
    assert block == ref.render_devices(), "regenerate: python -m automc.report.config_reference --write README.md"


def test_the_reference_covers_every_key_of_the_schema():
    from automc.config import ExperimentConfig

    text = ref.render_reference()

    def keys(model, prefix=""):
        for name, field in model.model_fields.items():
            yield f"{prefix}{name}"
            sub = ref._section_model(field.annotation)
            if sub is not None and name not in ("finetune", "final_finetune"):  # TrainConfig: listed under `train`
                yield from keys(sub, f"{prefix}{name}.")

    for key in keys(ExperimentConfig):
        assert f"| `{key}` |" in text, key
    assert "| `search.n_trials` | int | `20` |" in text
    assert "Same keys as [`train`](#train), with defaults epochs `1.0`, lr `0.01`." in text
    assert "#### `export.final_finetune`\n\nSame keys as [`train`](#train).\n" in text


def test_the_write_option_updates_only_the_marked_blocks(tmp_path):
    page = tmp_path / "README.md"
    start, end = ref.REFERENCE_MARKERS
    dstart, dend = ref.DEVICES_MARKERS
    page.write_text(f"# keep\n{start}\nSTALE-TEXT\n{end}\nmiddle\n{dstart}\n{dend}\ntail\n")
    assert ref.main(["--write", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# keep\n") and "middle" in text and text.endswith("tail\n") and "STALE-TEXT" not in text
    assert ref.between(text, ref.REFERENCE_MARKERS) == ref.render_reference()
