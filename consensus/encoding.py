"""Canonical encoding: the one way every signed or hashed structure becomes bytes.

Rules (docs/protocol.md, rule ENC-1..ENC-5):

- ENC-1  A structure is a msgpack *array* of its fields in declaration order. Maps are never used.
- ENC-2  Only four kinds of values exist: unsigned integers (0 .. 2**64-1), byte strings (msgpack bin),
         UTF-8 strings (msgpack str) and arrays. No floats, no booleans, no nil, no maps, no extensions.
- ENC-3  Every value takes its shortest msgpack form (what msgpack's own packer emits). Decoding re-encodes
         the value and rejects the input unless the bytes are identical, so there is exactly one encoding
         of every value, and a hash of the bytes is a hash of the value.
- ENC-4  Trailing bytes after the value are rejected.
- ENC-5  Every field has a declared bound (exact or maximum length, integer width); a value outside it is
         rejected while decoding, never later.

Structures are frozen dataclasses deriving from `Struct`; each field names its codec in its metadata::

    @dataclass(frozen=True)
    class Vote(Struct):
        height: int = field_(U64)
        block_hash: bytes = field_(HASH_OR_EMPTY)

`Struct.encode()`/`Struct.decode()` are the only encoders and decoders of the project's wire and hash formats.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, ClassVar, Generic, Self, TypeVar

import msgpack

from consensus.errors import DecodeError, ValidationError

T = TypeVar("T")

MAX_U64 = 2**64 - 1
#: Absolute cap on any encoded structure this code will try to decode (a block at most).
MAX_DECODE_BYTES = 64 * 1024 * 1024

Value = int | bytes | str | tuple["Value", ...]


def _check_value(v: object, depth: int = 0) -> None:
    if depth > 32:
        raise ValidationError("value nested deeper than 32 levels")
    t = type(v)
    if t is int:
        if not 0 <= v <= MAX_U64:  # type: ignore[operator]
            raise ValidationError(f"integer {v} outside 0..2**64-1")
    elif t is bytes or t is str:
        return
    elif t is tuple or t is list:
        for item in v:  # type: ignore[attr-defined]
            _check_value(item, depth + 1)
    else:
        raise ValidationError(f"type {t.__name__} cannot be encoded (only int, bytes, str and arrays)")


def encode_value(value: Value | Sequence[Any]) -> bytes:
    """Encode a plain value (int, bytes, str or nested tuples/lists of them) canonically."""
    _check_value(value)
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def pack(value: Any) -> bytes:
    """msgpack of a value whose parts are already known to be valid (checked fields of a Struct): the same
    bytes as `encode_value`, without walking the value first."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _decode_check(v: object, depth: int = 0) -> None:
    if depth > 32:
        raise DecodeError("value nested deeper than 32 levels")
    t = type(v)
    if t is int:
        if v < 0:  # type: ignore[operator]
            raise DecodeError("negative integers are not allowed")
    elif t is bytes or t is str:
        return
    elif t is tuple:
        for item in v:  # type: ignore[attr-defined]
            _decode_check(item, depth + 1)
    else:
        raise DecodeError(f"msgpack type {t.__name__} is not allowed (only int, bin, str and arrays)")


def decode_value(data: bytes, max_bytes: int = MAX_DECODE_BYTES, check_types: bool = True) -> Value:
    """Decode canonical bytes into a plain value (arrays become tuples). Raises DecodeError.

    `check_types=False` skips the walk that rejects floats, booleans and nil: for callers (Struct.decode)
    whose codecs check the type of every field anyway."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise DecodeError(f"{len(data)} bytes exceeds the limit of {max_bytes}")
    if not data:
        raise DecodeError("empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_map_len=0,
            max_ext_len=0,
        )
    except msgpack.ExtraData:
        raise DecodeError("trailing bytes after the value") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as e:
        raise DecodeError(f"not valid msgpack: {str(e)[:120] or type(e).__name__}") from None
    if check_types:
        _decode_check(value)
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError("non-canonical encoding")
    return value  # type: ignore[no-any-return]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --------------------------------------------------------------------------------------------- codecs


class Codec(Generic[T]):
    """Checks one field's value on the way in (decode or construction) and dumps it on the way out."""

    def check(self, v: object, name: str) -> T:
        raise NotImplementedError

    def check_wire(self, v: object, name: str) -> T:
        """Like `check`, for a value that came off the wire (decoding): may be stricter."""
        return self.check(v, name)

    def dump(self, v: T) -> Any:
        return v

    def to_json(self, v: T) -> Any:
        return v

    def from_json(self, v: object, name: str) -> T:
        return self.check(v, name)


class UInt(Codec[int]):
    def __init__(self, bits: int) -> None:
        self.max = 2**bits - 1
        self.bits = bits

    def check(self, v: object, name: str) -> int:
        if type(v) is not int:
            raise DecodeError(f"{name}: expected an integer, got {type(v).__name__}")
        if not 0 <= v <= self.max:
            raise DecodeError(f"{name}: {v} outside 0..2**{self.bits}-1")
        return v


class Bytes(Codec[bytes]):
    """A byte string of length `exact`, or of at most `max` bytes; `or_empty` also admits b""."""

    def __init__(self, *, exact: int | None = None, max: int | None = None, or_empty: bool = False) -> None:
        self.exact, self.max, self.or_empty = exact, max, or_empty

    def check(self, v: object, name: str) -> bytes:
        if type(v) is not bytes:
            raise DecodeError(f"{name}: expected bytes, got {type(v).__name__}")
        n = len(v)
        if self.exact is not None and n != self.exact and not (self.or_empty and n == 0):
            raise DecodeError(f"{name}: expected {self.exact} bytes, got {n}")
        if self.max is not None and n > self.max:
            raise DecodeError(f"{name}: {n} bytes exceeds the maximum of {self.max}")
        return v

    def to_json(self, v: bytes) -> Any:
        return v.hex()

    def from_json(self, v: object, name: str) -> bytes:
        if not isinstance(v, str):
            raise DecodeError(f"{name}: expected a hex string")
        try:
            raw = bytes.fromhex(v)
        except ValueError:
            raise DecodeError(f"{name}: not valid hex") from None
        if raw.hex() != v:
            raise DecodeError(f"{name}: hex must be lowercase")
        return self.check(raw, name)


class Text(Codec[str]):
    """A UTF-8 string of at most `max` bytes; `pattern` (a predicate on the string) narrows it further."""

    def __init__(self, max: int, *, min: int = 0, allowed: Callable[[str], bool] | None = None,
                 what: str = "") -> None:
        self.max, self.min, self.allowed, self.what = max, min, allowed, what
        # Strings that passed every check. Chain ids, transaction types, field and schema names repeat in
        # every transaction; the checks are a pure function of the string, so a hit is exact.
        self._passed: set[str] = set()

    def check(self, v: object, name: str) -> str:
        if type(v) is str and v in self._passed:
            return v
        if type(v) is not str:
            if not isinstance(v, str):
                raise DecodeError(f"{name}: expected a string, got {type(v).__name__}")
            v = str.__str__(v)  # a StrEnum member becomes its plain value
        try:
            n = len(v.encode("utf-8"))
        except UnicodeEncodeError:
            raise DecodeError(f"{name}: not valid UTF-8 text (lone surrogate)") from None
        if n > self.max:
            raise DecodeError(f"{name}: {n} bytes exceeds the maximum of {self.max}")
        if n < self.min:
            raise DecodeError(f"{name}: must have at least {self.min} bytes")
        if self.allowed is not None and not self.allowed(v):
            raise DecodeError(f"{name}: {v!r} is not {self.what or 'allowed'}")
        if n <= 64:
            if len(self._passed) >= 4096:
                self._passed.clear()
            self._passed.add(v)
        return v


class ListOf(Codec[tuple[T, ...]]):
    """An array of at most `max` items of one codec; `unique_sorted` demands strictly ascending items."""

    def __init__(self, item: Codec[T], max: int, *, unique_sorted: bool = False) -> None:
        self.item, self.max, self.unique_sorted = item, max, unique_sorted

    def check(self, v: object, name: str) -> tuple[T, ...]:
        if type(v) is not tuple and type(v) is not list:
            raise DecodeError(f"{name}: expected an array, got {type(v).__name__}")
        if len(v) > self.max:
            raise DecodeError(f"{name}: {len(v)} items exceeds the maximum of {self.max}")
        check = self.item.check
        out = tuple(check(x, name) for x in v)
        if self.unique_sorted:
            for i in range(1, len(out)):
                if not out[i - 1] < out[i]:  # type: ignore[operator]
                    raise DecodeError(f"{name}: items must be unique and in ascending order")
        return out

    def dump(self, v: tuple[T, ...]) -> Any:
        dump = self.item.dump
        return [dump(x) for x in v]

    def to_json(self, v: tuple[T, ...]) -> Any:
        return [self.item.to_json(x) for x in v]

    def from_json(self, v: object, name: str) -> tuple[T, ...]:
        if not isinstance(v, list):
            raise DecodeError(f"{name}: expected an array")
        return self.check(tuple(self.item.from_json(x, f"{name}[{i}]") for i, x in enumerate(v)), name)


S = TypeVar("S", bound="Struct")


class Nested(Codec[S]):
    """A nested structure, encoded as its own array."""

    def __init__(self, cls: type[S]) -> None:
        self.cls = cls

    def check(self, v: object, name: str) -> S:
        if isinstance(v, self.cls):
            return v
        return self.cls.from_value(v, name)

    def dump(self, v: S) -> Any:
        return v.to_value()

    def to_json(self, v: S) -> Any:
        return v.to_json()

    def from_json(self, v: object, name: str) -> S:
        return self.cls.from_json(v, name)


class Optional(Codec[S | None]):
    """A nested structure or nothing; nothing is encoded as the empty array (a structure never is)."""

    def __init__(self, cls: type[S]) -> None:
        self.inner = Nested(cls)

    def check(self, v: object, name: str) -> S | None:
        if v is None or v == () or v == []:
            return None
        return self.inner.check(v, name)

    def check_wire(self, v: object, name: str) -> S | None:
        if v is None:
            raise DecodeError(f"{name}: nil is not allowed (nothing is the empty array)")
        return self.check(v, name)

    def dump(self, v: S | None) -> Any:
        return [] if v is None else v.to_value()

    def to_json(self, v: S | None) -> Any:
        return None if v is None else v.to_json()

    def from_json(self, v: object, name: str) -> S | None:
        return None if v is None else self.inner.from_json(v, name)


U8, U16, U32, U64 = UInt(8), UInt(16), UInt(32), UInt(64)
HASH = Bytes(exact=32)
HASH_OR_EMPTY = Bytes(exact=32, or_empty=True)
PUBKEY = Bytes(exact=32)
SIGNATURE = Bytes(exact=64)


def field_(codec: Codec[Any]) -> Any:
    """Declare a Struct field with its codec: `height: int = field_(U64)`."""
    return dataclasses.field(metadata={"codec": codec})


# --------------------------------------------------------------------------------------------- structs


class Struct:
    """Base of every canonical structure: a frozen dataclass whose fields all declare a codec.

    Subclasses override `validate_basic()` for stateless rules that involve more than one field; the
    per-field bounds are checked by the codecs, on decode and on construction alike.
    """

    _spec: ClassVar[tuple[tuple[str, Codec[Any]], ...]]
    _names: ClassVar[tuple[str, ...]]  # "Class.field", for error messages

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._spec = ()  # filled lazily: the dataclass decorator runs after __init_subclass__

    @classmethod
    def spec(cls) -> tuple[tuple[str, Codec[Any]], ...]:
        if not cls._spec:
            fields = dataclasses.fields(cls)  # type: ignore[arg-type]
            cls._names = tuple(f"{cls.__name__}.{f.name}" for f in fields)
            cls._spec = tuple((f.name, f.metadata["codec"]) for f in fields)
        return cls._spec

    def __post_init__(self) -> None:
        spec = self.spec()
        for (name, codec), qual in zip(spec, self._names, strict=True):
            v = getattr(self, name)
            checked = codec.check(v, qual)
            if checked is not v:
                object.__setattr__(self, name, checked)
        self.validate_basic()

    def evolve(self, **changes: Any) -> Self:
        """A copy with some fields changed: only those are checked again (then validate_basic)."""
        obj = self.__class__.__new__(self.__class__)
        d = obj.__dict__
        d.update((name, self.__dict__[name]) for name, _ in self.spec())
        codecs = dict(self.spec())
        for name, v in changes.items():
            if name not in codecs:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            d[name] = codecs[name].check(v, f"{type(self).__name__}.{name}")
        obj.validate_basic()
        return obj

    # ---- value form (nested tuples) -------------------------------------------------------------

    def to_value(self) -> list[Any]:
        d = self.__dict__
        return [codec.dump(d[name]) for name, codec in self.spec()]

    @classmethod
    def from_value(cls, value: object, where: str = "") -> Self:
        spec = cls.spec()
        if type(value) is not tuple and type(value) is not list:
            raise DecodeError(f"{where or cls.__name__}: expected an array of {len(spec)} fields, "
                              f"got {type(value).__name__}")
        if len(value) != len(spec):
            raise DecodeError(f"{where or cls.__name__}: expected {len(spec)} fields, got {len(value)}")
        obj = cls.__new__(cls)
        d = obj.__dict__
        for (name, codec), qual, v in zip(spec, cls._names, value, strict=True):
            d[name] = codec.check_wire(v, qual)
        obj.validate_basic()
        return obj

    # ---- bytes -----------------------------------------------------------------------------------

    @cached_property
    def encoded(self) -> bytes:
        """The canonical bytes (computed once per object)."""
        return msgpack.packb(self.to_value(), use_bin_type=True)  # type: ignore[no-any-return]

    def encode(self) -> bytes:
        return self.encoded

    @classmethod
    def decode(cls, data: bytes, max_bytes: int = MAX_DECODE_BYTES) -> Self:
        """Decode canonical bytes, check every bound and `validate_basic`. Raises DecodeError/ValidationError."""
        obj = cls.from_value(decode_value(data, max_bytes, check_types=False))
        obj.__dict__["encoded"] = bytes(data)
        return obj

    @cached_property
    def hash(self) -> bytes:
        """SHA-256 of the canonical bytes."""
        return sha256(self.encoded)

    def validate_basic(self) -> None:
        """Stateless rules across fields; raise ValidationError. Field bounds are already checked."""

    # ---- JSON (bytes as lowercase hex), for files and the API --------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {name: codec.to_json(getattr(self, name)) for name, codec in self.spec()}

    @classmethod
    def from_json(cls, obj: object, where: str = "") -> Self:
        where = where or cls.__name__
        if not isinstance(obj, dict):
            raise DecodeError(f"{where}: expected a JSON object")
        spec = cls.spec()
        missing = [n for n, _ in spec if n not in obj]
        extra = sorted(set(obj) - {n for n, _ in spec})
        if missing or extra:
            raise DecodeError(f"{where}: missing fields {missing}, unknown fields {extra}")
        kwargs = {name: codec.from_json(obj[name], f"{where}.{name}") for name, codec in spec}
        return cls.from_value([codec.dump(kwargs[name]) for name, codec in spec], where)
