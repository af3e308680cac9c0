// Measurement pieces shared by the compare_* programs, so that tpcomm, Open MPI
// and Gloo are timed by exactly the same code:
//   - an input pattern that changes on every call and whose sum is exact in
//     f32 and bf16 for any summation order (so results can be checked bit for bit),
//   - a spinning barrier on one shared cache line (its exit skew is one
//     cache-line handoff, ~50-190 ns, far below an MPI_Barrier's),
//   - order statistics and the command-line options common to the programs.
//
// Output protocol: rank 0 prints one line per measurement, "RESULT {json}",
// plus "INFO {json}" and "WRONG {json}" lines; bench/compare parses them.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace cmp {

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- bf16 -----------------------------------------------------------------------

inline float bf16_to_f32(std::uint16_t h) {
  const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even (inputs here are finite).
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}

enum class Dtype { f32, bf16 };

inline std::size_t elem_size(Dtype d) { return d == Dtype::f32 ? 4 : 2; }
inline const char* dtype_str(Dtype d) { return d == Dtype::f32 ? "f32" : "bf16"; }
inline Dtype parse_dtype(std::string_view s) {
  if (s == "f32") return Dtype::f32;
  if (s == "bf16") return Dtype::bf16;
  throw std::invalid_argument("unknown dtype '" + std::string(s) + "' (f32, bf16)");
}

// ---- input pattern ----------------------------------------------------------------

// Element i of rank r's input in call k is (r + 1) * ((i + k) & 7). The sum over
// n ranks is n(n+1)/2 * ((i + k) & 7): an integer <= 252 for n <= 8, and so are
// all partial sums, which makes the result exact in f32 and bf16 whatever the
// order of summation. Consecutive calls see different data, so no call can be
// served from what the previous call left in the caches.
class Pattern {
 public:
  static constexpr std::size_t kPeriod = 8;

  Pattern(Dtype dtype, std::size_t max_count, int rank) : dtype_(dtype), esz_(elem_size(dtype)) {
    // The pattern is stored once with kPeriod spare elements; call k copies it
    // from offset (k mod kPeriod): one memcpy per rewrite, the cheapest rewrite
    // there is, and it stays outside the timed region anyway.
    const std::size_t n = max_count + kPeriod;
    storage_.resize(n * esz_);
    for (std::size_t i = 0; i < n; ++i) {
      const float v = static_cast<float>((rank + 1) * static_cast<int>(i & 7));
      if (dtype == Dtype::f32) {
        std::memcpy(storage_.data() + i * 4, &v, 4);
      } else {
        const std::uint16_t h = f32_to_bf16(v);
        std::memcpy(storage_.data() + i * 2, &h, 2);
      }
    }
  }

  void write(void* dst, std::size_t count, std::uint64_t call) const {
    std::memcpy(dst, storage_.data() + (call % kPeriod) * esz_, count * esz_);
  }

  struct Mismatch {
    std::size_t wrong = 0;
    std::size_t first_index = 0;
    double got = 0, want = 0;
  };

  // Compares a result with the independently computed sum of call k over
  // world_size ranks.
  Mismatch check(const void* result, std::size_t count, std::uint64_t call, int world_size) const {
    Mismatch m;
    const int factor = world_size * (world_size + 1) / 2;
    const auto* bytes = static_cast<const unsigned char*>(result);
    for (std::size_t i = 0; i < count; ++i) {
      const float want = static_cast<float>(factor * static_cast<int>((i + call) & 7));
      float got;
      if (dtype_ == Dtype::f32) {
        std::memcpy(&got, bytes + i * 4, 4);
      } else {
        std::uint16_t h;
        std::memcpy(&h, bytes + i * 2, 2);
        got = bf16_to_f32(h);
      }
      if (got != want) {
        if (m.wrong++ == 0) {
          m.first_index = i;
          m.got = got;
          m.want = want;
        }
      }
    }
    return m;
  }

 private:
  Dtype dtype_;
  std::size_t esz_;
  std::vector<unsigned char> storage_;
};

// ---- page-aligned private buffer --------------------------------------------------

class Buffer {
 public:
  explicit Buffer(std::size_t bytes) {
    const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 4095) / 4096 * 4096;
    p_ = static_cast<unsigned char*>(std::aligned_alloc(4096, rounded));
    if (p_ == nullptr) throw std::bad_alloc();
    // Fault every page in now, not inside a timed call.
    std::memset(p_, 0, rounded);
  }
  ~Buffer() { std::free(p_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  unsigned char* data() const { return p_; }

 private:
  unsigned char* p_ = nullptr;
};

// ---- spinning barrier on shared memory ------------------------------------------

// Counting barrier: arrivals on one cache line, the release on another. The
// last rank to arrive leaves at once and the others leave one cache-line
// handoff later. When there are more ranks than CPUs, spinning would starve
// the rank everybody waits for, so it yields instead.
class SpinBarrier {
 public:
  // Rank 0 creates the segment (call create() on rank 0, then open() on the
  // others after an out-of-band barrier, then unlink() on rank 0).
  void create(const std::string& name, int world_size) { map(name, world_size, O_CREAT | O_EXCL | O_RDWR); }
  void open(const std::string& name, int world_size) { map(name, world_size, O_RDWR); }
  void unlink() const { shm_unlink(name_.c_str()); }
  // Yield while waiting even with a CPU per rank: for libraries that progress
  // in a background thread bound to the same core (Gloo), a spinning waiter would
  // hold that thread off until the next scheduler tick.
  void always_yield() { yield_ = true; }

  ~SpinBarrier() {
    if (shared_ != nullptr) munmap(shared_, sizeof(Shared));
  }

  void wait() {
    const std::uint32_t generation = generation_++;
    if (shared_->arrived.fetch_add(1, std::memory_order_acq_rel) == static_cast<std::uint32_t>(world_size_ - 1)) {
      shared_->arrived.store(0, std::memory_order_relaxed);
      shared_->generation.store(generation + 1, std::memory_order_release);
      return;
    }
    for (unsigned spins = 0; shared_->generation.load(std::memory_order_acquire) == generation; ++spins) {
      if (yield_ && spins >= 64) sched_yield();
    }
  }

 private:
  struct Shared {
    alignas(64) std::atomic<std::uint32_t> arrived;
    alignas(64) std::atomic<std::uint32_t> generation;
  };

  void map(const std::string& name, int world_size, int flags) {
    name_ = name;
    world_size_ = world_size;
    yield_ = yield_ || world_size > static_cast<int>(std::thread::hardware_concurrency());
    const int fd = shm_open(name.c_str(), flags, 0600);
    if (fd < 0) throw std::runtime_error("shm_open " + name + ": " + std::strerror(errno));
    if ((flags & O_CREAT) != 0 && ftruncate(fd, sizeof(Shared)) != 0) {
      close(fd);
      throw std::runtime_error("ftruncate " + name + ": " + std::strerror(errno));
    }
    void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) throw std::runtime_error("mmap " + name + ": " + std::strerror(errno));
    // A fresh segment is zero-filled: arrived = generation = 0.
    shared_ = static_cast<Shared*>(p);
  }

  std::string name_;
  Shared* shared_ = nullptr;
  int world_size_ = 1;
  bool yield_ = false;
  std::uint32_t generation_ = 0;
};

// ---- statistics -----------------------------------------------------------------

// q in [0, 1], linear interpolation between order statistics.
inline double quantile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// nccl-tests' bus bandwidth for all_reduce.
inline double busbw_gbps(std::size_t bytes, double seconds, int world_size) {
  return static_cast<double>(bytes) / seconds * (2.0 * (world_size - 1) / world_size) / 1e9;
}

// ---- options ----------------------------------------------------------------------

// Accepts 4096, 4K, 4KiB, 2M, 2MiB, 1G.
inline std::size_t parse_bytes(std::string_view s) {
  std::size_t pos = 0;
  const std::string text(s);
  const unsigned long long v = std::stoull(text, &pos);
  std::string unit = text.substr(pos);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I')) unit.pop_back();
  std::size_t mult = 1;
  if (unit == "K" || unit == "k") mult = 1ull << 10;
  else if (unit == "M" || unit == "m") mult = 1ull << 20;
  else if (unit == "G" || unit == "g") mult = 1ull << 30;
  else if (!unit.empty()) throw std::invalid_argument("bad size '" + text + "'");
  return static_cast<std::size_t>(v) * mult;
}

inline std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t comma = s.find(',', start);
    const std::size_t end = comma == std::string_view::npos ? s.size() : comma;
    if (end > start) out.emplace_back(s.substr(start, end - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

// The schedule, identical for every variant of one measurement.
struct Schedule {
  std::vector<std::size_t> sizes{4096, 32768, 262144, 2097152, 16777216, 67108864};
  std::vector<Dtype> dtypes{Dtype::f32, Dtype::bf16};
  std::vector<std::string> variants;  // empty: the program's default set
  int rounds = 31;                    // rounds per size (variants interleaved in each)
  int min_rounds = 7;                 // never fewer, even over budget
  double round_ms = 2.0;              // time each variant gets per round
  int max_iters = 64;                 // calls per variant per round, at most
  double size_budget_s = 8.0;         // wall time per (size, dtype), all variants together
  std::string label = "main";         // copied into every RESULT line
  std::size_t evict_bytes = 0;        // scratch written before every call (untimed): cold caches
};

// Parses the options shared by the compare programs; returns false on an unknown one.
inline bool parse_schedule_option(Schedule& s, std::string_view key, std::string_view value) {
  if (key == "--sizes") {
    s.sizes.clear();
    for (const auto& x : split_list(value)) s.sizes.push_back(parse_bytes(x));
  } else if (key == "--dtypes") {
    s.dtypes.clear();
    for (const auto& x : split_list(value)) s.dtypes.push_back(parse_dtype(x));
  } else if (key == "--variants") {
    s.variants = split_list(value);
  } else if (key == "--rounds") {
    s.rounds = std::stoi(std::string(value));
  } else if (key == "--min-rounds") {
    s.min_rounds = std::stoi(std::string(value));
  } else if (key == "--round-ms") {
    s.round_ms = std::stod(std::string(value));
  } else if (key == "--max-iters") {
    s.max_iters = std::stoi(std::string(value));
  } else if (key == "--size-budget") {
    s.size_budget_s = std::stod(std::string(value));
  } else if (key == "--evict") {
    s.evict_bytes = parse_bytes(value);
  } else if (key == "--label") {
    s.label = std::string(value);
  } else {
    return false;
  }
  return true;
}

// Calls per variant per round and rounds, from the slowest variant's warm-up
// time, so that each variant gets ~round_ms per round and the whole size stays
// within its budget. Every rank must pass the same (max-reduced) times.
struct Plan {
  int iters = 1;
  int rounds = 1;
};
inline Plan make_plan(const Schedule& s, const std::vector<double>& warm_seconds, double overhead_seconds) {
  const double slowest = *std::max_element(warm_seconds.begin(), warm_seconds.end());
  double per_round_one_iter = 0;
  for (double t : warm_seconds) per_round_one_iter += t + overhead_seconds;
  Plan p;
  p.iters = std::clamp(static_cast<int>(s.round_ms * 1e-3 / std::max(slowest, 1e-9)), 1, s.max_iters);
  const double round_seconds = per_round_one_iter * p.iters;
  const int affordable = static_cast<int>(s.size_budget_s / std::max(round_seconds, 1e-9));
  p.rounds = std::clamp(affordable, s.min_rounds, s.rounds);
  return p;
}

// ---- JSON output ------------------------------------------------------------------

// Minimal JSON object writer for the RESULT/INFO lines (flat objects only).
class JsonLine {
 public:
  explicit JsonLine(const char* tag) : out_(std::string(tag) + " {") {}
  JsonLine& str(const char* key, std::string_view v) {
    sep();
    out_ += '"';
    out_ += key;
    out_ += "\":\"";
    for (char c : v) {
      if (c == '"' || c == '\\') out_ += '\\';
      if (static_cast<unsigned char>(c) >= 0x20) out_ += c;
    }
    out_ += '"';
    return *this;
  }
  JsonLine& num(const char* key, double v) {
    sep();
    char buf[64];
    if (std::isfinite(v)) std::snprintf(buf, sizeof buf, "\"%s\":%.6g", key, v);
    else std::snprintf(buf, sizeof buf, "\"%s\":null", key);
    out_ += buf;
    return *this;
  }
  JsonLine& integer(const char* key, long long v) {
    sep();
    out_ += '"';
    out_ += key;
    out_ += "\":" + std::to_string(v);
    return *this;
  }
  void print() {
    out_ += "}\n";
    std::fputs(out_.c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  void sep() {
    if (out_.back() != '{') out_ += ',';
  }
  std::string out_;
};

// ---- the measurement loop ---------------------------------------------------------

// One thing to time: its input pattern and element count, where the input
// goes before each call, where the result appears, and the call itself.
struct Variant {
  std::string name;
  Dtype dtype = Dtype::f32;
  std::size_t count = 0;
  const Pattern* pattern = nullptr;
  void* input = nullptr;
  const void* result = nullptr;
  std::function<void()> run;
};

struct VariantStats {
  std::string name;
  Dtype dtype = Dtype::f32;
  std::size_t bytes = 0;
  std::vector<double> seconds;  // per call: the slowest rank's time
  std::vector<double> skew;     // per call: latest minus earliest start over ranks
  double wrong = 0;             // wrong elements seen in the checked calls (max over ranks)
  Pattern::Mismatch first;      // this rank's first mismatch
  int rounds = 0, iters = 0;
};

// Collective element-wise reductions over ranks, in place.
using ReduceVector = std::function<void(std::vector<double>&)>;

// Times every variant, interleaved round by round (the
// machine switches between latency states every few seconds; interleaving
// gives every variant the same mix). Each call: rewrite the input (untimed),
// spin barrier, time exactly one call, spin barrier. The first call of each
// variant and its first call in the last round are checked. `call` numbers
// the calls and must advance identically on all ranks.
inline std::vector<VariantStats> measure(const Schedule& schedule, std::vector<Variant>& variants,
                                         const std::function<void()>& barrier, int world_size, std::uint64_t& call,
                                         const ReduceVector& reduce_max, const ReduceVector& reduce_min) {
  const std::size_t nv = variants.size();
  std::vector<VariantStats> stats(nv);
  std::vector<std::vector<double>> starts(nv);
  for (std::size_t v = 0; v < nv; ++v) {
    stats[v].name = variants[v].name;
    stats[v].dtype = variants[v].dtype;
    stats[v].bytes = variants[v].count * elem_size(variants[v].dtype);
  }

  std::vector<unsigned char> scratch(schedule.evict_bytes);
  auto evict = [&] {
    if (!scratch.empty()) std::memset(scratch.data(), static_cast<int>(call & 0xff), scratch.size());
  };
  auto checked_call = [&](std::size_t v, bool check) {
    Variant& var = variants[v];
    evict();
    const std::uint64_t k = call++;
    var.pattern->write(var.input, var.count, k);
    barrier();
    const std::int64_t t0 = now_ns();
    var.run();
    const std::int64_t t1 = now_ns();
    // A rank that is done must not start rewriting its next input (memory
    // traffic) while another rank is still inside the timed call.
    barrier();
    if (check) {
      const Pattern::Mismatch m = var.pattern->check(var.result, var.count, k, world_size);
      if (m.wrong != 0 && stats[v].wrong == 0) stats[v].first = m;
      stats[v].wrong += static_cast<double>(m.wrong);
    }
    return std::pair<double, double>{static_cast<double>(t1 - t0) * 1e-9, static_cast<double>(t0)};
  };

  // Warm-up: five calls each, the first one checked; the median of the other
  // four sizes the plan (one preempted call must not shrink the schedule).
  std::vector<double> warm(nv + 1, 0.0);
  for (std::size_t v = 0; v < nv; ++v) {
    std::vector<double> times;
    for (int i = 0; i < 5; ++i) {
      const double t = checked_call(v, i == 0).first;
      if (i > 0) times.push_back(t);
    }
    warm[v] = quantile(times, 0.5);
  }
  {
    const std::int64_t t0 = now_ns();
    evict();
    variants[0].pattern->write(variants[0].input, variants[0].count, call);
    warm[nv] = static_cast<double>(now_ns() - t0) * 1e-9;  // the rewrite, paid once per call
  }
  reduce_max(warm);
  const double overhead = warm[nv] + 2e-6;
  warm.pop_back();
  const Plan plan = make_plan(schedule, warm, overhead);

  for (auto& s : stats) {
    s.seconds.reserve(static_cast<std::size_t>(plan.rounds * plan.iters));
    s.rounds = plan.rounds;
    s.iters = plan.iters;
  }
  for (int r = 0; r < plan.rounds; ++r) {
    for (std::size_t j = 0; j < nv; ++j) {
      // Rotate the order every round and reverse it every other round, so that
      // no variant always has the same position or follows the same variant.
      const std::size_t k = (j + static_cast<std::size_t>(r / 2)) % nv;
      const std::size_t v = r % 2 == 0 ? k : nv - 1 - k;
      for (int i = 0; i < plan.iters; ++i) {
        const auto [seconds, start] = checked_call(v, i == 0 && r == plan.rounds - 1);
        stats[v].seconds.push_back(seconds);
        starts[v].push_back(start);
      }
    }
  }

  for (std::size_t v = 0; v < nv; ++v) {
    reduce_max(stats[v].seconds);
    std::vector<double> latest = starts[v];
    reduce_max(latest);
    reduce_min(starts[v]);
    stats[v].skew.resize(latest.size());
    for (std::size_t i = 0; i < latest.size(); ++i) stats[v].skew[i] = (latest[i] - starts[v][i]) * 1e-9;
    std::vector<double> wrong{stats[v].wrong};
    reduce_max(wrong);
    stats[v].wrong = wrong[0];
  }
  return stats;
}

// The RESULT line for one variant (rank 0 prints it).
inline void print_result(const Schedule& schedule, const VariantStats& s, int world_size,
                         std::string_view algorithm) {
  const Dtype dtype = s.dtype;
  const std::size_t bytes = s.bytes;
  const double median = quantile(s.seconds, 0.5);
  JsonLine("RESULT")
      .str("label", schedule.label)
      .str("variant", s.name)
      .str("dtype", dtype_str(dtype))
      .integer("bytes", static_cast<long long>(bytes))
      .integer("world_size", world_size)
      .num("median_us", median * 1e6)
      .num("p10_us", quantile(s.seconds, 0.1) * 1e6)
      .num("p90_us", quantile(s.seconds, 0.9) * 1e6)
      .num("min_us", quantile(s.seconds, 0.0) * 1e6)
      .num("busbw_gbps", busbw_gbps(bytes, median, world_size))
      .num("start_skew_us", quantile(s.skew, 0.5) * 1e6)
      .integer("samples", static_cast<long long>(s.seconds.size()))
      .integer("rounds", s.rounds)
      .integer("iters_per_round", s.iters)
      .num("wrong_elements", s.wrong)
      .str("algorithm", algorithm)
      .print();
  if (s.wrong > 0) {
    JsonLine("WRONG")
        .str("label", schedule.label)
        .str("variant", s.name)
        .str("dtype", dtype_str(dtype))
        .integer("bytes", static_cast<long long>(bytes))
        .num("wrong_elements", s.wrong)
        .integer("first_index_rank0", static_cast<long long>(s.first.first_index))
        .num("got", s.first.got)
        .num("want", s.first.want)
        .print();
  }
}

}  // namespace cmp
