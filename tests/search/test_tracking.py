"""The MLflow store of a search: a new SQLite store starts as a copy of an empty store that this
MLflow version created and migrated once per machine."""


def test_a_new_sqlite_store_is_a_copy_of_one_migrated_once_and_never_replaces_a_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from automc.search.tracking import seed_sqlite_store

    monkeypatch.setenv("AUTOMC_CACHE_DIR", str(tmp_path / "cache"))
    first, second = (f"sqlite:///{tmp_path / name / 'mlflow.db'}" for name in ("a", "b"))
    seed_sqlite_store(first)
    templates = list((tmp_path / "cache" / "mlflow").glob("empty-*.db"))
    assert len(templates) == 1
    made = templates[0].stat().st_mtime_ns
    MlflowClient(first).create_experiment("mine")

    seed_sqlite_store(second)
    assert templates[0].stat().st_mtime_ns == made  # migrated once, copied since
    assert [e.name for e in MlflowClient(second).search_experiments()] == ["Default"]  # a working, empty store
    seed_sqlite_store(first)  # a store that exists is never replaced
    assert {e.name for e in MlflowClient(first).search_experiments()} == {"Default", "mine"}
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
