"""File readers with errors that name the file, line and column at fault, and the dataset folder lookup."""

from __future__ import annotations

import csv
import io
import pickle
from pathlib import Path

import numpy as np

from pentad_core.data import dataset_root
from pentad_core.errors import DataError, missing_file

#: What to do about a missing METR-LA / PEMS-BAY file: they have no stable download URL.
DCRNN_HINT = "DCRNN publishes it on Google Drive / Baidu only: copy it into that folder by hand (docs/traffic.md)."

#: Header names recognised as a timestamp column in a speed CSV.
TIMESTAMP_HEADERS = {"timestamp", "time", "date", "datetime", ""}


def _read_rows(path: Path, what: str) -> list[list[str]]:
    if not path.is_file():
        raise missing_file(path, what, "Check --data-dir or the path in the config.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{what} {path} is not a UTF-8 text file.", "Export it as CSV and retry.") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{what} {path} is empty.")
    return rows


def _to_float(cell: str, path: Path, line: int, column: int) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        shown = repr(cell) if text else "an empty cell"
        raise DataError(
            f"{path}: line {line}, column {column} holds {shown}, not a number.",
            "Fix the cell; write 0 to mark a missing speed reading.",
        ) from None
    if not np.isfinite(value):
        raise DataError(
            f"{path}: line {line}, column {column} holds {text!r}.",
            "NaN and infinity are not accepted; write 0 to mark a missing speed reading.",
        )
    return value


def _check_width(rows: list[list[str]], width: int, path: Path, first_line: int) -> None:
    for offset, row in enumerate(rows):
        if len(row) != width:
            raise DataError(
                f"{path}: line {first_line + offset} has {len(row)} cells but {width} are expected (ragged row).",
                "Every row needs one value per column.",
            )


def read_speed_csv(path: str | Path) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Read a time x sensors speed table.

    The first row holds the sensor ids. An optional first column holds timestamps; it is
    recognised by its header (``timestamp``, ``time``, ``date``, ``datetime`` or empty).

    Args:
        path: The CSV file.

    Returns:
        ``speeds`` ``(T, N)`` float32, ``sensor_ids`` (N), and ``timestamps`` ``(T,)``
        ``datetime64[s]`` or None.

    Raises:
        DataError: Missing file, ragged rows, non-numeric or NaN cells, unparsable timestamps.
    """
    path = Path(path)
    rows = _read_rows(path, "speed table")
    header = [cell.strip() for cell in rows[0]]
    body = rows[1:]
    if not body:
        raise DataError(f"{path} has a header but no data rows.")
    _check_width(body, len(header), path, first_line=2)
    has_time = header[0].lower() in TIMESTAMP_HEADERS
    timestamps = None
    if has_time:
        try:
            timestamps = np.array([row[0].strip().replace(" ", "T") for row in body], dtype="datetime64[s]")
        except ValueError:
            raise DataError(
                f"{path}: the timestamp column {header[0]!r} holds a value that is not an ISO date-time.",
                "Use e.g. 2012-03-01 00:05:00.",
            ) from None
        header, body = header[1:], [row[1:] for row in body]
    if not header:
        raise DataError(f"{path} has no sensor columns.")
    start = 2 if has_time else 1
    speeds = np.empty((len(body), len(header)), dtype=np.float32)
    for i, row in enumerate(body):
        try:
            speeds[i] = [float(cell) for cell in row]
        except ValueError:
            for j, cell in enumerate(row):
                _to_float(cell, path, i + 2, j + start)
        if not np.isfinite(speeds[i]).all():
            j = int(np.argmin(np.isfinite(speeds[i])))
            _to_float(row[j], path, i + 2, j + start)
    return speeds, header, timestamps


def read_matrix_csv(path: str | Path, what: str = "adjacency") -> tuple[np.ndarray, list[str] | None]:
    """Read a square weight matrix, with or without a header row of sensor ids.

    Returns:
        ``matrix`` ``(N, N)`` float32 and the header ids (None without a header).
    """
    path = Path(path)
    rows = _read_rows(path, f"{what} matrix")
    header = None
    try:
        float(rows[0][0])
    except ValueError:
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
    width = len(rows[0]) if rows else 0
    _check_width(rows, width, path, first_line=2 if header else 1)
    matrix = np.array(
        [
            [_to_float(cell, path, i + (2 if header else 1), j + 1) for j, cell in enumerate(row)]
            for i, row in enumerate(rows)
        ],
        dtype=np.float32,
    ).reshape(len(rows), width)
    if matrix.shape[0] != matrix.shape[1]:
        raise DataError(f"{path}: the {what} matrix must be square, got {matrix.shape[0]}x{matrix.shape[1]}.")
    return matrix, header


def read_distance_csv(path: str | Path) -> list[tuple[str, str, float]]:
    """Read an edge list ``from,to,distance`` (header optional), as in DCRNN's distances_la_2012.csv."""
    path = Path(path)
    rows = _read_rows(path, "distance list")
    try:
        float(rows[0][2])
        first = 1
    except (ValueError, IndexError):
        rows, first = rows[1:], 2
    _check_width(rows, 3, path, first_line=first)
    return [(a.strip(), b.strip(), _to_float(d, path, i + first, 3)) for i, (a, b, d) in enumerate(rows)]


def gaussian_kernel_adjacency(
    edges: list[tuple[str, str, float]], sensor_ids: list[str], threshold: float = 0.1
) -> np.ndarray:
    """Turn road distances into weights ``exp(-(d / sigma)^2)``, as DCRNN's gen_adj_mx does.

    ``sigma`` is the standard deviation of the listed finite distances; weights below
    ``threshold`` are set to 0 to keep the graph sparse. Pairs not listed get weight 0, and
    edges naming unknown sensors are ignored.

    Args:
        edges: ``(from_id, to_id, distance)`` triples.
        sensor_ids: The N sensor ids in column order.
        threshold: Weights under it become 0.

    Returns:
        ``(N, N)`` float32 weights.
    """
    index = {sensor: i for i, sensor in enumerate(sensor_ids)}
    distances = np.full((len(sensor_ids), len(sensor_ids)), np.inf, dtype=np.float64)
    np.fill_diagonal(distances, 0.0)
    for source, target, distance in edges:
        if source in index and target in index:
            distances[index[source], index[target]] = distance
    finite = distances[np.isfinite(distances)]
    sigma = finite.std()
    if sigma <= 0:
        sigma = 1.0
    weights = np.exp(-np.square(distances / sigma))
    weights[weights < threshold] = 0.0
    return weights.astype(np.float32)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing that can run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_adj_pickle(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read DCRNN's ``adj_mx.pkl``: ``(sensor_ids, sensor_id_to_index, adj_mx)``.

    Only numpy arrays and plain Python containers are unpickled; anything else is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "DCRNN sensor graph (adj_mx.pkl)", DCRNN_HINT)
    try:
        with path.open("rb") as handle:
            content = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
        sensor_ids, _, adjacency = content
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{path} is not a DCRNN adj_mx.pkl ({error}).", "Replace it with DCRNN's file.") from None
    ids = [s.decode() if isinstance(s, bytes) else str(s) for s in sensor_ids]
    return ids, np.asarray(adjacency, dtype=np.float32)


def read_dcrnn_h5(path: str | Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Read a DCRNN speed table (pandas ``HDFStore`` fixed format, key ``df`` or ``speed``) with h5py.

    Returns:
        ``speeds`` ``(T, N)`` float32, ``sensor_ids`` and ``timestamps`` ``datetime64[s]``.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "DCRNN speed table (.h5)", DCRNN_HINT)
    try:
        with h5py.File(path, "r") as handle:
            keys = [k for k in ("df", "speed") if k in handle]
            if not keys:
                raise DataError(f"{path} holds neither a 'df' nor a 'speed' table (keys: {list(handle)}).")
            group = handle[keys[0]]
            speeds = np.asarray(group["block0_values"], dtype=np.float32)
            columns = [c.decode() if isinstance(c, bytes) else str(c) for c in group["axis0"][()]]
            index = np.asarray(group["axis1"][()], dtype=np.int64)
    except OSError as error:
        raise DataError(f"{path} is not a readable HDF5 file ({error}).", "Download it again.") from None
    except KeyError as error:
        raise DataError(f"{path} is not in the pandas HDFStore layout of DCRNN ({error}).") from None
    timestamps = index.astype("datetime64[ns]").astype("datetime64[s]")
    if speeds.shape != (len(index), len(columns)):
        raise DataError(f"{path}: table of shape {speeds.shape} for {len(index)} rows x {len(columns)} sensors.")
    return speeds, columns, timestamps


def resolve_root(name: str, root: str | Path | None, downloadable: bool = False) -> Path:
    """The folder of dataset ``name``: ``root`` if given, else ``$PENTAD_DATA/<name>``, else
    ``~/.cache/pentad/<name>`` (:func:`pentad_core.data.dataset_root`). ``downloadable``: the
    dataset has official files (`data download NAME` fetches them), named in the error.

    Raises:
        DataError: If the folder does not exist.
    """
    folder = dataset_root(name, root)
    if not folder.is_dir():
        hint = "Pass --data-dir or set PENTAD_DATA to the datasets root."
        if root is None and downloadable:
            hint = f"Run `apps/traffic data download {name}`, or pass --data-dir."
        raise missing_file(folder, f"{name} dataset folder", hint)
    return folder


def align_adjacency(
    adjacency: np.ndarray, adjacency_ids: list[str] | None, sensor_ids: list[str], path: Path
) -> np.ndarray:
    """Reorder a matrix that carries its own sensor ids into the speed table's column order.

    Args:
        adjacency: ``(N, N)`` weights as read.
        adjacency_ids: The ``N`` sensor ids of its rows and columns, or None when it has none
            (then it must already be in the speed table's order).
        sensor_ids: The ``N`` sensor ids of the speed table's columns.
        path: The file, named in errors.

    Raises:
        DataError: If the sizes differ or a sensor of the speed table is missing from the matrix.
    """
    if adjacency.shape[0] != len(sensor_ids):
        raise DataError(
            f"{path}: adjacency is {adjacency.shape[0]}x{adjacency.shape[1]} but the speed table has "
            f"{len(sensor_ids)} sensors; it must be {len(sensor_ids)}x{len(sensor_ids)}."
        )
    if adjacency_ids is None or adjacency_ids == sensor_ids:
        return adjacency
    position = {sensor: i for i, sensor in enumerate(adjacency_ids)}
    unknown = [s for s in sensor_ids if s not in position]
    if unknown:
        raise DataError(f"{path}: sensors {unknown[:3]} of the speed table are missing from the adjacency.")
    order = np.array([position[s] for s in sensor_ids])
    return adjacency[np.ix_(order, order)]
