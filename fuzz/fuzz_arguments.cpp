// libFuzzer target: argument validation of the C API.
//
// One single-rank communicator (world size 1, rank 0) receives a random
// sequence of C API calls: every collective, point-to-point and group call,
// with pointers drawn from a few real buffers (random offsets, overlaps, NULL),
// counts that fit the buffers, overflow size_t or are arbitrary (with NULL
// buffers, so nothing may be touched), and random dtype/op/root/peer values.
//
// The oracle, beyond "no crash, no ASan/UBSan report":
//   - every failed call returns a known status with a non-empty message, and
//     leaves every buffer exactly as it was (rejected before anything moved);
//   - with one rank the only errors possible are invalid arguments (and a
//     count disagreement in all_to_allv, reported as a mismatch);
//   - a call that succeeds really ran: with one rank every collective's result
//     is the rank's own input, so the receive range must hold the input and
//     no byte outside it may change.
// A broken rule aborts with a description, which libFuzzer reports as a crash.
#include <fuzzer/FuzzedDataProvider.h>

#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "c_calls.h"
#include "tpcomm/tpcomm.h"

namespace {

constexpr std::size_t kMax = SIZE_MAX;
constexpr std::array<std::size_t, 4> kBufferBytes{4096, 4096, 320, 64};

struct Arena {
  std::array<std::vector<unsigned char>, kBufferBytes.size()> buffers;
  std::array<std::vector<unsigned char>, kBufferBytes.size()> before;
  Arena() {
    for (std::size_t i = 0; i < buffers.size(); ++i) buffers[i].resize(kBufferBytes[i]);
  }
  void fill(std::uint32_t seed) {
    for (auto& buffer : buffers) {
      for (auto& byte : buffer) {
        seed = seed * 1664525u + 1013904223u;
        byte = static_cast<unsigned char>(seed >> 24);
      }
    }
  }
  void snapshot() { before = buffers; }
};

// A pointer into the arena (or NULL) and how many bytes are valid from it.
struct Region {
  unsigned char* pointer = nullptr;
  std::size_t bytes = 0;  // for NULL: unbounded, the call must reject it anyway
  int buffer = -1;
  std::size_t offset = 0;
};

tpcomm_comm_t g_comm = nullptr;
Arena* g_arena = nullptr;
int g_instance = 0;
// FUZZ_TRACE=1 prints every call (to turn a crashing input into a reproducer).
bool g_trace = false;


[[noreturn]] void broken(const std::string& rule) {
  std::fprintf(stderr, "fuzz_arguments: %s\n", rule.c_str());
  std::fflush(stderr);
  std::abort();
}

void create_communicator() {
  if (g_comm != nullptr) tpcomm_comm_destroy(g_comm);
  g_comm = nullptr;
  const std::string job = "fuzz_" + std::to_string(::getpid()) + "_" + std::to_string(g_instance++);
  tpcomm_options_t options;
  tpcomm_options_init(&options);
  options.timeout_seconds = 10;
  options.chunk_bytes = 4096;  // small staging: valid calls of a few KiB take several rounds
  if (tpcomm_comm_create(0, 1, job.c_str(), &options, &g_comm) != TPCOMM_SUCCESS) {
    broken(std::string("cannot create the single-rank communicator: ") + tpcomm_last_error());
  }
}

void trace_region(const char* label, const Region& r) {
  if (r.pointer == nullptr) {
    std::fprintf(stderr, " %s=NULL", label);
  } else {
    std::fprintf(stderr, " %s=buffer%d+%zu(%zu bytes left)", label, r.buffer, r.offset, r.bytes);
  }
}

Region pick_region(FuzzedDataProvider& in) {
  Region region;
  const int choice = in.ConsumeIntegralInRange<int>(0, static_cast<int>(kBufferBytes.size()));
  if (choice == 0) {
    region.bytes = kMax;
    return region;
  }
  region.buffer = choice - 1;
  auto& buffer = g_arena->buffers[static_cast<std::size_t>(region.buffer)];
  region.offset = in.ConsumeIntegralInRange<std::size_t>(0, buffer.size());
  region.pointer = buffer.data() + region.offset;
  region.bytes = buffer.size() - region.offset;
  return region;
}

// A count for `element`-byte elements, `units` of them per count, reading
// from the given regions. Counts that fit, counts whose byte size overflows
// size_t, and (with `anything` set, only when the call has no usable buffer
// left) arbitrary counts.
std::size_t pick_count(FuzzedDataProvider& in, std::size_t element, std::size_t units,
                       std::initializer_list<const Region*> regions) {
  std::size_t fit = kMax;
  for (const Region* r : regions) fit = std::min(fit, r->bytes);
  const std::size_t size = element == 0 ? 1 : element;
  fit = fit / size / units;
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      return 0;
    case 1:
      return in.ConsumeIntegralInRange<std::size_t>(0, std::min<std::size_t>(fit, 4096));
    case 2:
      if (element == 0) return in.ConsumeIntegral<std::size_t>();  // rejected for the dtype anyway
      // No count of 1-byte elements overflows: then a fitting one.
      if (element == 1) return in.ConsumeIntegralInRange<std::size_t>(0, std::min<std::size_t>(fit, 4096));
      return in.ConsumeIntegralInRange<std::size_t>(kMax / element + 1, kMax);
    default:
      // Arbitrary: safe only if nothing can be touched, i.e. every buffer
      // the call reads or writes is NULL (then it must be rejected).
      for (const Region* r : regions) {
        if (r->pointer != nullptr) return in.ConsumeIntegralInRange<std::size_t>(0, std::min<std::size_t>(fit, 16));
      }
      return in.ConsumeIntegral<std::size_t>();
  }
}

int pick_dtype(FuzzedDataProvider& in) {
  return in.ConsumeProbability<float>() < 0.9f ? in.ConsumeIntegralInRange<int>(0, 7) : in.ConsumeIntegral<int>();
}
int pick_op(FuzzedDataProvider& in) {
  return in.ConsumeProbability<float>() < 0.9f ? in.ConsumeIntegralInRange<int>(0, 4) : in.ConsumeIntegral<int>();
}
int pick_rank(FuzzedDataProvider& in) {
  return in.ConsumeProbability<float>() < 0.8f ? 0 : in.ConsumeIntegral<int>();
}

bool is_nan(int dtype, const unsigned char* p) {
  switch (dtype) {
    case TPCOMM_F32: {
      float v;
      std::memcpy(&v, p, 4);
      return std::isnan(v);
    }
    case TPCOMM_F64: {
      double v;
      std::memcpy(&v, p, 8);
      return std::isnan(v);
    }
    case TPCOMM_F16: {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0;
    }
    case TPCOMM_BF16: {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      return (h & 0x7f80u) == 0x7f80u && (h & 0x007fu) != 0;
    }
    default:
      return false;
  }
}

struct Write {
  unsigned char* to = nullptr;
  const unsigned char* expected = nullptr;  // a copy of the input, taken before the call
  std::size_t elements = 0;
};

// After a successful call: the written range holds the expected elements (a
// NaN may come back as another NaN), and nothing else in the arena changed.
void check_success(const char* call, int dtype, const Write& write) {
  const std::size_t element = fz_dtype_size(dtype);
  if (element == 0) broken(std::string(call) + " accepted an unknown dtype " + std::to_string(dtype));
  const std::size_t bytes = write.elements * element;
  for (std::size_t b = 0; b < g_arena->buffers.size(); ++b) {
    const auto& now = g_arena->buffers[b];
    const auto& old = g_arena->before[b];
    for (std::size_t i = 0; i < now.size(); ++i) {
      const unsigned char* p = now.data() + i;
      const bool inside = bytes > 0 && p >= write.to && p < write.to + bytes;
      if (!inside && now[i] != old[i]) {
        broken(std::string(call) + " succeeded but wrote outside its receive range (buffer " + std::to_string(b) +
               ", byte " + std::to_string(i) + ")");
      }
    }
  }
  for (std::size_t e = 0; e < write.elements; ++e) {
    const unsigned char* got = write.to + e * element;
    const unsigned char* want = write.expected + e * element;
    if (std::memcmp(got, want, element) != 0 && !(is_nan(dtype, got) && is_nan(dtype, want))) {
      broken(std::string(call) + " succeeded with a wrong result at element " + std::to_string(e) + " of " +
             std::to_string(write.elements) + " (dtype " + std::to_string(dtype) + ")");
    }
  }
}

void check_unchanged(const char* call) {
  for (std::size_t b = 0; b < g_arena->buffers.size(); ++b) {
    if (g_arena->buffers[b] != g_arena->before[b]) {
      broken(std::string(call) + " failed but changed buffer " + std::to_string(b) + ": " + tpcomm_last_error());
    }
  }
}

// Checks a call's status. `write` describes the result of a success; a
// mismatch is acceptable only where `mismatch_possible`.
void check_status(const char* call, tpcomm_status_t status, int dtype, const Write& write,
                  bool mismatch_possible = false) {
  if (g_trace) std::fprintf(stderr, "  -> %s: %s %s\n", call, tpcomm_status_string(status), tpcomm_last_error());
  if (status == TPCOMM_SUCCESS) {
    check_success(call, dtype, write);
    return;
  }
  const char* message = tpcomm_last_error();
  if (message == nullptr || message[0] == '\0') broken(std::string(call) + " failed without a message");
  const bool allowed = status == TPCOMM_ERROR_INVALID_ARGUMENT || (mismatch_possible && status == TPCOMM_ERROR_MISMATCH);
  if (!allowed) {
    broken(std::string(call) + " returned " + tpcomm_status_string(status) + " on a single rank: " + message);
  }
  check_unchanged(call);
  // A mismatch fails the communicator for good: start a fresh one.
  if (status == TPCOMM_ERROR_MISMATCH) create_communicator();
}

// A copy of `elements` elements at `from` (NULL or nothing: empty).
std::vector<unsigned char> copy_of(const Region& from, std::size_t bytes) {
  if (from.pointer == nullptr || bytes == 0 || bytes > from.bytes) return {};
  return std::vector<unsigned char>(from.pointer, from.pointer + bytes);
}

std::size_t bytes_of(std::size_t count, int dtype) {
  const std::size_t element = fz_dtype_size(dtype);
  if (element == 0 || count > kMax / element) return 0;
  return count * element;
}

// One random call. Every collective of a single rank has the same result:
// recv gets the rank's own send.
void one_call(FuzzedDataProvider& in) {
  const int kind = in.ConsumeIntegralInRange<int>(0, 19);
  Region send = pick_region(in);
  Region recv = pick_region(in);
  const int dtype = pick_dtype(in);
  const int op = pick_op(in);
  const std::size_t element = fz_dtype_size(dtype);
  g_arena->snapshot();
  if (g_trace) {
    std::fprintf(stderr, "call kind %d dtype %d op %d", kind, dtype, op);
    trace_region("send", send);
    trace_region("recv", recv);
    std::fprintf(stderr, "\n");
  }
  auto trace_count = [&](std::size_t count) {
    if (g_trace) std::fprintf(stderr, "  count %zu\n", count);
    return count;
  };

  // Most collectives: count elements from send land at recv.
  auto simple = [&](const char* name, auto&& call) {
    const std::size_t count = trace_count(pick_count(in, element, 1, {&send, &recv}));
    const std::vector<unsigned char> input = copy_of(send, bytes_of(count, dtype));
    const tpcomm_status_t status = call(count);
    check_status(name, status, dtype, {recv.pointer, input.data(), input.empty() ? 0 : count});
  };

  switch (kind) {
    case 0:
      simple("all_reduce", [&](std::size_t n) { return fz_all_reduce(g_comm, send.pointer, recv.pointer, n, dtype, op); });
      break;
    case 1:
      simple("reduce_scatter",
             [&](std::size_t n) { return fz_reduce_scatter(g_comm, send.pointer, recv.pointer, n, dtype, op); });
      break;
    case 2: {
      std::size_t counts[1] = {pick_count(in, element, 1, {&send, &recv})};
      const bool null_counts = in.ConsumeProbability<float>() < 0.05f;
      const std::vector<unsigned char> input = copy_of(send, bytes_of(counts[0], dtype));
      const tpcomm_status_t status =
          fz_reduce_scatterv(g_comm, send.pointer, recv.pointer, null_counts ? nullptr : counts, dtype, op);
      check_status("reduce_scatterv", status, dtype, {recv.pointer, input.data(), input.empty() ? 0 : counts[0]});
      break;
    }
    case 3:
      simple("all_gather",
             [&](std::size_t n) { return fz_all_gather(g_comm, send.pointer, recv.pointer, n, dtype); });
      break;
    case 4: {
      std::size_t counts[1] = {pick_count(in, element, 1, {&send, &recv})};
      const bool null_counts = in.ConsumeProbability<float>() < 0.05f;
      const std::vector<unsigned char> input = copy_of(send, bytes_of(counts[0], dtype));
      const tpcomm_status_t status =
          fz_all_gatherv(g_comm, send.pointer, recv.pointer, null_counts ? nullptr : counts, dtype);
      check_status("all_gatherv", status, dtype, {recv.pointer, input.data(), input.empty() ? 0 : counts[0]});
      break;
    }
    case 5: {
      const int root = pick_rank(in);
      simple("broadcast",
             [&](std::size_t n) { return fz_broadcast(g_comm, send.pointer, recv.pointer, n, dtype, root); });
      break;
    }
    case 6: {
      const int root = pick_rank(in);
      simple("reduce",
             [&](std::size_t n) { return fz_reduce(g_comm, send.pointer, recv.pointer, n, dtype, op, root); });
      break;
    }
    case 7: {
      const int root = pick_rank(in);
      simple("gather", [&](std::size_t n) { return fz_gather(g_comm, send.pointer, recv.pointer, n, dtype, root); });
      break;
    }
    case 8: {
      const int root = pick_rank(in);
      simple("scatter", [&](std::size_t n) { return fz_scatter(g_comm, send.pointer, recv.pointer, n, dtype, root); });
      break;
    }
    case 9:
      simple("all_to_all", [&](std::size_t n) { return fz_all_to_all(g_comm, send.pointer, recv.pointer, n, dtype); });
      break;
    case 10: {
      // Displacement + count within each buffer, or a displacement whose
      // byte extent overflows size_t; the receive count may disagree with
      // the send count.
      const std::size_t size = element == 0 ? 1 : element;
      struct Block {
        std::size_t displ = 0, count = 0, room = 0;
        bool overflows = false;
      };
      auto pick_block = [&](const Region& r) {
        Block b;
        b.room = r.pointer == nullptr ? 64 : r.bytes / size;
        if (in.ConsumeProbability<float>() < 0.1f) {
          b.overflows = true;
          b.count = in.ConsumeIntegralInRange<std::size_t>(1, 64);
          b.displ = in.ConsumeIntegralInRange<std::size_t>(kMax / size, kMax);
          return b;
        }
        b.displ = in.ConsumeIntegralInRange<std::size_t>(0, b.room);
        b.count = in.ConsumeIntegralInRange<std::size_t>(0, b.room - b.displ);
        return b;
      };
      const Block sent = pick_block(send);
      Block received = pick_block(recv);
      if (in.ConsumeBool() && !received.overflows && sent.count <= received.room - received.displ) {
        received.count = sent.count;
      }
      std::size_t send_counts[1] = {sent.count}, send_displs[1] = {sent.displ};
      std::size_t recv_counts[1] = {received.count}, recv_displs[1] = {received.displ};
      const int null_array = in.ConsumeIntegralInRange<int>(0, 20);
      const std::size_t sent_bytes = bytes_of(send_counts[0], dtype);
      Region from = send;
      const bool in_range = send.pointer != nullptr && element != 0 && send_displs[0] <= send.bytes / element;
      if (in_range) {
        from.pointer += send_displs[0] * element;
        from.bytes -= send_displs[0] * element;
      }
      const std::vector<unsigned char> input = in_range ? copy_of(from, sent_bytes) : std::vector<unsigned char>{};
      unsigned char* to = recv.pointer != nullptr && element != 0 && recv_displs[0] <= recv.bytes / element
                              ? recv.pointer + recv_displs[0] * element
                              : nullptr;
      const tpcomm_status_t status = fz_all_to_allv(
          g_comm, send.pointer, null_array == 1 ? nullptr : send_counts, null_array == 2 ? nullptr : send_displs,
          recv.pointer, null_array == 3 ? nullptr : recv_counts, null_array == 4 ? nullptr : recv_displs, dtype);
      if (status == TPCOMM_SUCCESS && send_counts[0] != recv_counts[0]) {
        broken("all_to_allv succeeded with send count " + std::to_string(send_counts[0]) + " and receive count " +
               std::to_string(recv_counts[0]));
      }
      check_status("all_to_allv", status, dtype, {to, input.data(), input.empty() ? 0 : send_counts[0]},
                   send_counts[0] != recv_counts[0]);
      break;
    }
    case 11: {
      const std::size_t count = pick_count(in, element, 1, {&send});
      check_status("send", fz_send(g_comm, send.pointer, count, dtype, in.ConsumeIntegral<int>()), dtype, {});
      break;
    }
    case 12: {
      const std::size_t count = pick_count(in, element, 1, {&recv});
      check_status("recv", fz_recv(g_comm, recv.pointer, count, dtype, in.ConsumeIntegral<int>()), dtype, {});
      break;
    }
    case 13: {
      std::vector<fz_p2p_t> ops(in.ConsumeIntegralInRange<std::size_t>(0, 4));
      for (auto& o : ops) {
        const Region& r = in.ConsumeBool() ? send : recv;
        o.is_send = in.ConsumeIntegral<int>();
        o.buffer = r.pointer;
        o.dtype = pick_dtype(in);
        o.count = pick_count(in, fz_dtype_size(o.dtype), 1, {&r});
        o.peer = in.ConsumeIntegral<int>();
      }
      const bool null_ops = !ops.empty() && in.ConsumeProbability<float>() < 0.1f;
      const tpcomm_status_t status = fz_p2p_batch(g_comm, ops.data(), ops.size(), null_ops ? 1 : 0);
      // An empty batch succeeds; any operation needs a peer other than rank 0.
      if (status == TPCOMM_SUCCESS && !ops.empty()) broken("p2p_batch with peers succeeded on a single rank");
      check_status("p2p_batch", status, TPCOMM_U8, {});
      break;
    }
    case 14:
      check_status("barrier", tpcomm_barrier(g_comm), TPCOMM_U8, {});
      break;
    case 15: {
      tpcomm_comm_t child = nullptr;
      const int color = in.ConsumeProbability<float>() < 0.7f ? in.ConsumeIntegralInRange<int>(-2, 3)
                                                               : in.ConsumeIntegral<int>();
      const tpcomm_status_t status = tpcomm_comm_split(g_comm, color, in.ConsumeIntegral<int>(), &child);
      check_status("comm_split", status, TPCOMM_U8, {});
      if (child != nullptr) {
        std::int32_t one = 1, got = 0;
        if (tpcomm_all_reduce(child, &one, &got, 1, TPCOMM_I32, TPCOMM_SUM) != TPCOMM_SUCCESS || got != 1) {
          broken(std::string("a split communicator does not work: ") + tpcomm_last_error());
        }
        tpcomm_comm_destroy(child);
      }
      break;
    }
    case 16: {
      std::vector<int> ranks(in.ConsumeIntegralInRange<std::size_t>(0, 3));
      for (int& r : ranks) r = pick_rank(in);
      const bool null_ranks = in.ConsumeProbability<float>() < 0.1f;
      tpcomm_comm_t child = nullptr;
      const tpcomm_status_t status =
          tpcomm_comm_new_group(g_comm, null_ranks ? nullptr : ranks.data(), ranks.size(), &child);
      check_status("comm_new_group", status, TPCOMM_U8, {});
      if (child != nullptr) tpcomm_comm_destroy(child);
      break;
    }
    case 17: {
      const double seconds = in.ConsumeFloatingPoint<double>();
      check_status("comm_set_timeout", tpcomm_comm_set_timeout(g_comm, seconds), TPCOMM_U8, {});
      tpcomm_comm_set_timeout(g_comm, 10.0);
      break;
    }
    case 18: {
      const std::string text = in.ConsumeRandomLengthString(16);
      tpcomm_dtype_t parsed_dtype;
      tpcomm_redop_t parsed_op;
      check_status("dtype_from_string", tpcomm_dtype_from_string(text.c_str(), &parsed_dtype), TPCOMM_U8, {});
      check_status("redop_from_string", tpcomm_redop_from_string(text.c_str(), &parsed_op), TPCOMM_U8, {});
      if (fz_dtype_name(dtype) == nullptr || fz_redop_name(op) == nullptr || fz_status_string(op) == nullptr) {
        broken("a name function returned NULL");
      }
      (void)tpcomm_all_reduce_algorithm(g_comm, in.ConsumeIntegral<std::size_t>(),
                                        static_cast<tpcomm_dtype_t>(in.ConsumeIntegral<int>()));
      break;
    }
    default: {
      // Creation with random arguments; world sizes above 1 with a valid rank
      // would wait for peers that never come, so they are not drawn.
      int world = in.ConsumeIntegral<int>();
      const int rank = in.ConsumeIntegral<int>();
      if (world > 1 && world <= TPCOMM_MAX_WORLD_SIZE && rank >= 0 && rank < world) world = 1;
      const std::string job = in.ConsumeRandomLengthString(80);
      tpcomm_options_t options;
      tpcomm_options_init(&options);
      options.timeout_seconds = in.ConsumeFloatingPoint<double>();
      options.chunk_bytes = in.ConsumeIntegral<std::size_t>();
      if (options.chunk_bytes > (std::size_t{1} << 20)) options.chunk_bytes %= (std::size_t{1} << 20) + 4096;
      tpcomm_comm_t comm = nullptr;
      const tpcomm_status_t status =
          tpcomm_comm_create(rank, world, in.ConsumeBool() ? nullptr : job.c_str(), &options, &comm);
      if (status == TPCOMM_SUCCESS) {
        tpcomm_comm_destroy(comm);
      } else {
        const char* message = tpcomm_last_error();
        if (message == nullptr || message[0] == '\0') broken("comm_create failed without a message");
        if (status != TPCOMM_ERROR_INVALID_ARGUMENT) {
          broken(std::string("comm_create returned ") + tpcomm_status_string(status) + ": " + message);
        }
        if (comm != nullptr) broken("comm_create failed but set *out");
      }
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* trace = std::getenv("FUZZ_TRACE");
  g_trace = trace != nullptr && trace[0] == '1';
  g_arena = new Arena();
  create_communicator();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  g_arena->fill(in.ConsumeIntegral<std::uint32_t>());
  for (int calls = 0; calls < 8 && in.remaining_bytes() > 0; ++calls) one_call(in);
  return 0;
}
