"""Loading, validation, splits, id maps and negative sampling on small generated files."""

from __future__ import annotations

import numpy as np
import pytest

from pentad_core.errors import ConfigError, DataError
from pentad_recsys.data import load_dataset, make_split, make_synthetic
from pentad_recsys.data.interactions import IdMap
from pentad_recsys.data.ml1m import load_ml1m
from pentad_recsys.data.ml100k import load_ml100k
from pentad_recsys.data.ml_latest_small import load_ml_latest_small
from pentad_recsys.data.sampling import NegativeSampler

GENRES = "|".join(["0"] * 18)


def write_ml100k(root, lines=None):
    root.mkdir(parents=True, exist_ok=True)
    lines = lines or ["1\t10\t5\t100", "1\t20\t3\t101", "2\t10\t4\t102", "2\t30\t1\t103", "3\t20\t2\t104"]
    (root / "u.data").write_text("\n".join(lines) + "\n")
    items = [f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|1|{GENRES}" for i in (10, 20, 30)]
    (root / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    (root / "u.user").write_text("1|24|M|technician|1\n2|53|F|other|2\n3|17|M|writer|3\n")
    (root / "u.occupation").write_text("other\ntechnician\nwriter\n")
    (root / "u1.base").write_text("\n".join(lines[:3]) + "\n")
    (root / "u1.test").write_text("\n".join(lines[3:]) + "\n")
    return root


def test_ml100k_layout_side_features_and_official_split(tmp_path):
    data = load_ml100k(write_ml100k(tmp_path / "ml-100k"))
    inter = data.interactions
    assert (len(inter), inter.num_users, inter.num_items) == (5, 3, 3)
    assert inter.item_titles[inter.item_map.index(20)] == "Movie 20 (1995)"
    fields = inter.features.user_fields[inter.user_map.index(3)]
    assert fields.tolist() == [1, 1, 3]  # age 17 -> bucket "under 18", male, writer
    assert inter.features.item_tags.shape == (3, 19)
    split = make_split(data, "u1")
    assert (len(split.train), len(split.test)) == (3, 2)
    assert split.test.user_map is inter.user_map


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1\t10\tfive\t100", "u.data:3: rating or timestamp"),
        ("1\t10\t7\t100", "u.data:3: rating 7"),
        ("1 10", "u.data:3"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    root = write_ml100k(tmp_path / "bad", ["1\t10\t5\t100", "2\t20\t3\t101", line])
    with pytest.raises(DataError, match=message):
        load_ml100k(root)


def test_duplicates_keep_the_latest_event(tmp_path, caplog):
    root = write_ml100k(tmp_path / "dup", ["1\t10\t5\t200", "1\t10\t2\t100", "2\t10\t4\t100", "1\t10\t3\t200"])
    inter = load_ml100k(root).interactions
    assert len(inter) == 2
    assert inter.notes["duplicates_dropped"] == 2
    row = np.flatnonzero(inter.users == inter.user_map.index(1))[0]
    assert inter.ratings[row] == 3.0  # latest timestamp 200, later line wins the tie
    assert "duplicate" in caplog.text


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_ml100k(tmp_path / "nowhere")
    root = tmp_path / "empty"
    root.mkdir()
    (root / "u.data").write_text("")
    with pytest.raises(DataError, match="no interactions"):
        load_ml100k(root)


def test_ml1m_double_colon_format(tmp_path):
    root = tmp_path / "ml-1m"
    root.mkdir()
    (root / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (root / "movies.dat").write_text("1193::One Flew (1975)::Drama\n661::James (1996)::Animation|Children's\n")
    (root / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    inter = load_ml1m(root).interactions
    assert (len(inter), inter.num_users, inter.num_items) == (3, 2, 2)
    assert inter.features.item_tags.sum() == 3
    assert inter.features.user_fields[inter.user_map.index(2)].tolist() == [7, 1, 17]


def test_ml_latest_small_csv_with_half_stars(tmp_path):
    root = tmp_path / "ml-latest-small"
    root.mkdir()
    (root / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n")
    (root / "movies.csv").write_text('movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Comedy\n3,X,Comedy\n')
    inter = load_ml_latest_small(root).interactions
    assert inter.rating_range == (0.5, 5.0)
    assert inter.item_titles[0] == "Toy Story, The (1995)"


def test_generic_csv_with_column_mapping_and_implicit_events(tmp_path):
    path = tmp_path / "events.tsv"
    path.write_text("when\twho\twhat\n5\tu1\tbook\n6\tu2\tpen\n7\tu1\tpen\n")
    data = load_dataset("csv", path, user_col="who", item_col="what", rating_col=None, time_col="when", sep="\t")
    inter = data.interactions
    assert not inter.explicit and inter.ratings.tolist() == [1.0, 1.0, 1.0]
    assert inter.user_map.raw_ids == ["u1", "u2"]
    with pytest.raises(DataError, match="not a column"):
        load_dataset("csv", path, user_col="nobody", sep="\t")
    with pytest.raises(ConfigError):
        load_dataset("csv", None)


def test_synthetic_is_deterministic_and_within_range():
    a, b = make_synthetic(seed=5), make_synthetic(seed=5)
    np.testing.assert_array_equal(a.interactions.ratings, b.interactions.ratings)
    assert a.interactions.ratings.min() >= 1 and a.interactions.ratings.max() <= 5
    assert a.interactions.features.num_user_fields == 3


def test_splits_random_temporal_loo_and_errors():
    data = make_synthetic(num_users=30, num_items=40, interactions_per_user=8, seed=1)
    n = len(data.interactions)
    random = make_split(data, "random", ratio=0.25, seed=0)
    assert len(random.test) == round(0.25 * n) and len(random.train) + len(random.test) == n
    loo = make_split(data, "loo")
    assert len(loo.test) == data.interactions.num_users
    for user in range(3):
        train_times = loo.train.timestamps[loo.train.users == user]
        assert loo.test.timestamps[loo.test.users == user].min() >= train_times.max()
    temporal = make_split(data, "temporal", n_test=2, val_ratio=0.1)
    assert np.bincount(temporal.test.users).max() == 2 and temporal.val is not None
    with pytest.raises(DataError, match="no official split"):
        make_split(data, "u1")
    with pytest.raises(ConfigError):
        make_split(data, "weekly")
    with pytest.raises(DataError, match="empty"):
        make_split(data, "temporal", n_test=100)


def test_id_map_round_trip_and_unknown_ids():
    ids = IdMap.from_values([30, 10, 20, 10])
    assert ids.raw_ids == [10, 20, 30] and ids.index("20") == 1 and ids.raw(2) == 30
    assert ids.extend([40, 10]) == [3]
    with pytest.raises(DataError, match="unknown user 99"):
        ids.index(99, "user")


def test_negative_sampler_never_returns_a_positive():
    data = make_synthetic(num_users=20, num_items=30, interactions_per_user=10, seed=2).interactions
    sampler = NegativeSampler(data, seed=0)
    users = np.repeat(np.arange(20), 50)
    negatives = sampler.sample(users, per_user=3)
    assert negatives.shape == (1000, 3)
    assert not sampler.is_known(np.repeat(users[:, None], 3, 1), negatives).any()
