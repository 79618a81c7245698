"""Device-only stand-in for polars: the lent GPU machine has pyarrow but no polars, and the
polars wheel is larger than a device call may carry (benchmarks/device/grid.sh). Enough to
load a prepared dataset cache (read_parquet, column access, to_numpy); anything else fails."""

import pyarrow as pa
import pyarrow.parquet as pq


class Series:
    def __init__(self, array: pa.ChunkedArray, name: str) -> None:
        self._array = array
        self.name = name

    def to_numpy(self):
        return self._array.to_numpy()

    def to_list(self):
        return self._array.to_pylist()

    def __len__(self) -> int:
        return len(self._array)


class DataFrame:
    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __getitem__(self, name: str) -> Series:
        return Series(self._table.column(name), name)

    def get_column(self, name: str) -> Series:
        return self[name]

    @property
    def height(self) -> int:
        return self._table.num_rows

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names)

    def __len__(self) -> int:
        return self._table.num_rows


def read_parquet(path) -> DataFrame:
    return DataFrame(pq.read_table(str(path)))


class _Dtype:
    pass


List = Utf8 = String = Int64 = Int32 = UInt32 = Float64 = Float32 = Boolean = Struct = _Dtype
Expr = Series
LazyFrame = DataFrame
__version__ = "0.0-device-shim"
