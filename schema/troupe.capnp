@0xdfcc75d73d2ba714;
# Everything troupe sends between processes or writes to disk.
# Tensor payloads are one raw little-endian byte block, never a list of floats.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("troupe::schema");

enum DType {
  float32 @0;
}

struct Tensor {
  dtype @0 :DType;
  shape @1 :List(UInt64);
  data @2 :Data;          # row-major elements, little-endian
}

# A contiguous piece of a flattened vector (gradients or parameters).
struct Slice {
  offset @0 :UInt64;      # first element within the flattened vector
  total @1 :UInt64;       # elements in the whole flattened vector
  chunk @2 :UInt32;       # chunk number when a slice is sent in pieces
  chunks @3 :UInt32;
  values @4 :Tensor;
}

struct GradientSlice {
  worker @0 :UInt32;
  step @1 :UInt64;
  seq @2 :UInt64;
  subtree @3 :UInt32;     # canonical reduction subtree the values cover
  slice @4 :Slice;
}

struct ParamSlice {
  shard @0 :UInt32;
  version @1 :UInt64;
  slice @2 :Slice;
}

# The state of one parameter shard, enough to restart it bit for bit.
struct ParamShardSnapshot {
  shard @0 :UInt32;
  version @1 :UInt64;
  params @2 :Slice;
  optimizerState @3 :List(Tensor);
  optimizerStep @4 :UInt64;
  appliedWorkers @5 :List(UInt32);
  appliedSteps @6 :List(UInt64);
  # Fingerprint of the job that wrote it (what a resumed job must match):
  # hex SHA-256 over the pipeline settings that decide the bits.
  job @7 :Text;
}

# A whole file on disk: magic and version checked before anything else.
struct FileHeader {
  magic @0 :UInt64;       # "TROUPE01" as little-endian
  formatVersion @1 :UInt32;
  kind @2 :Text;          # "params", "snapshot", "checkpoint"
  crc32 @3 :UInt32;       # of the body message bytes
  bodyBytes @4 :UInt64;
}

struct ParamsFile {
  job @0 :Text;
  version @1 :UInt64;
  params @2 :Tensor;
}

# The header of one frame on the data plane (runtime/bulk.hpp): a tensor
# between two processes over a connection of its own. On the socket:
# u32 header length, this message (flat, unpacked), then the payload of
# `elements` little-endian float32 values as one raw block.
struct BulkFrame {
  dest @0 :UInt64;        # receiving actor's id in the peer process
  kind @1 :UInt32;        # what the tags mean, up to the sender's layer
  tags @2 :List(Int64);
  shape @3 :List(UInt64);
  elements @4 :UInt64;    # product of shape
}
