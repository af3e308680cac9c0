// Communicator: owns the shared-memory segment and the channel over it,
// validates every call's arguments before any rank moves, and keeps a failed
// communicator failed.
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "algorithms/all_reduce.hpp"
#include "algorithms/collectives.hpp"
#include "algorithms/point_to_point.hpp"
#include "algorithms/zero_copy.hpp"
#include "core/communicator_impl.hpp"
#include "core/config.hpp"
#include "core/job_token.hpp"
#include "core/error.hpp"
#include "core/worker_pool.hpp"
#include "shm/channel.hpp"
#include "shm/layout.hpp"
#include "shm/segment.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm {

using namespace detail;

namespace {

// Bumped in every child after fork(): a communicator notices it is being used
// from a process that did not create it without a getpid() call per collective.
std::atomic<std::uint64_t> g_fork_generation{0};
void on_fork_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
const bool g_fork_handler_installed = [] { return pthread_atfork(nullptr, nullptr, &on_fork_child) == 0; }();

// CPUs online in the machine (at least 1).
int machine_cpus() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// CPUs this process may run on.
int online_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return machine_cpus();
}

// Communicators created with the same job id in one process get consecutive
// instance numbers; every rank creates them in the same order, so the numbers
// agree and two communicators of one job never share a segment name.
std::uint64_t next_instance(const std::string& token) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::uint64_t> counters;
  std::lock_guard lock(mutex);
  return counters[token]++;
}

// Whether every rank recorded in a segment's header is gone (and at least one
// was recorded). A segment whose rendezvous never completed and whose every
// recorded rank is dead can never be used again.
bool all_recorded_dead(const SegmentHeader& header) {
  if (header.world_size == 0 || header.world_size > static_cast<std::uint32_t>(kMaxWorldSize)) return false;
  bool any_recorded = false;
  for (std::uint32_t r = 0; r < header.world_size; ++r) {
    const std::int32_t pid = header.ranks[r].pid.load(std::memory_order_relaxed);
    if (pid == 0) continue;
    any_recorded = true;
    if (process_alive(pid)) return false;
  }
  return any_recorded;
}

// Whether another job's segment is garbage: every recorded rank is dead and
// no rank of that job can still be on its way. A rank may still arrive at a
// rendezvous that failed moments ago (it is told why) or whose only arrived
// rank just died (it waits for a replacement, then reports the dead rank):
// removing such a segment would make it start a new rendezvous and wait for
// the dead until its deadline. So a failed rendezvous counts once its failure
// is older than kRecentFailureSeconds, an unfinished one once the segment is
// kStaleAfterSeconds old; a completed one at once.
constexpr double kRecentFailureSeconds = 5.0;
constexpr double kStaleAfterSeconds = 10.0;

bool is_stale(const SegmentHeader& header, double age_seconds) {
  if (header.magic.load(std::memory_order_acquire) != kSegmentMagic || !all_recorded_dead(header)) return false;
  if (header.completed.load(std::memory_order_acquire) != 0) return true;
  const std::int64_t failed_at = header.abort.recorded_ns.load(std::memory_order_relaxed);
  // (A failure whose time is not written yet is being recorded right now; one
  // whose recorder died before writing it ages with the file.)
  if (header.abort.code.load(std::memory_order_acquire) != 0 && failed_at != 0) {
    return monotonic_ns() - failed_at > static_cast<std::int64_t>(kRecentFailureSeconds * 1e9);
  }
  return age_seconds >= kStaleAfterSeconds;
}

// The pid in a temporary creation name "<name>.init<pid>", or 0.
pid_t temporary_owner(const std::string& name) {
  const std::size_t at = name.rfind(".init");
  if (at == std::string::npos || at + 5 >= name.size()) return 0;
  const std::string digits = name.substr(at + 5);
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) return 0;
  return static_cast<pid_t>(std::stol(digits));
}

// Removes stale segments of this user from /dev/shm, except `own` (the
// rendezvous decides about that one): segments of start-ups that can no
// longer complete (is_stale), and temporary creation names whose creator is
// dead.
// Names are unlinked once a rendezvous completes, so only failed start-ups
// leave such files behind.
void remove_stale_segments(const std::string& own) {
  const std::string prefix = "tpcomm-" + std::to_string(::getuid()) + "-";
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.rfind(prefix, 0) != 0 || "/" + name == own) continue;
    if (const pid_t owner = temporary_owner(name); owner != 0) {
      if (!process_alive(owner)) ::shm_unlink(("/" + name).c_str());
      continue;
    }
    const int fd = ::shm_open(("/" + name).c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) continue;
    struct stat info {};
    if (::fstat(fd, &info) == 0 && static_cast<std::size_t>(info.st_size) >= sizeof(SegmentHeader)) {
      void* mapping = ::mmap(nullptr, sizeof(SegmentHeader), PROT_READ, MAP_SHARED, fd, 0);
      if (mapping != MAP_FAILED) {
        const double age = static_cast<double>(::time(nullptr) - info.st_mtime);
        if (is_stale(*static_cast<const SegmentHeader*>(mapping), age)) ::shm_unlink(("/" + name).c_str());
        ::munmap(mapping, sizeof(SegmentHeader));
      }
    }
    ::close(fd);
  }
  ::closedir(dir);
}

// Records a rendezvous failure in the header of segment `name` (mapping only
// the header), so that ranks already waiting there fail at once instead of at
// their deadline. Best effort: never throws.
void post_rendezvous_failure(const std::string& name, int rank, const Error& error) noexcept {
  const int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) return;
  struct stat info {};
  if (::fstat(fd, &info) == 0 && static_cast<std::size_t>(info.st_size) >= sizeof(SegmentHeader)) {
    void* mapping = ::mmap(nullptr, sizeof(SegmentHeader), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mapping != MAP_FAILED) {
      record_failure(static_cast<SegmentHeader*>(mapping)->abort, error.code(), rank, error.what());
      ::munmap(mapping, sizeof(SegmentHeader));
    }
  }
  ::close(fd);
}

bool ranges_overlap(const std::byte* a, std::size_t a_bytes, const std::byte* b, std::size_t b_bytes) {
  const auto a0 = reinterpret_cast<std::uintptr_t>(a);
  const auto b0 = reinterpret_cast<std::uintptr_t>(b);
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

}  // namespace

// Shared buffers of one communicator, looked up by every all_reduce. Entries
// are removed when their SharedBuffer goes; the registry outlives both.
struct SharedRegion {
  std::uint32_t id = 0;
  std::byte* regions = nullptr;  // rank 0's region in this process's mapping
  std::size_t stride = 0;
  std::size_t bytes = 0;
};
using SharedRegistry = std::vector<SharedRegion>;

class ShmSharedState final : public SharedBuffer::State {
 public:
  ShmSharedState(ShmSegment segment, std::byte* mine, std::size_t bytes, std::weak_ptr<SharedRegistry> registry,
                 std::uint32_t id)
      : segment_(std::move(segment)), mine_(mine), bytes_(bytes), registry_(std::move(registry)), id_(id) {}
  ~ShmSharedState() override {
    if (auto registry = registry_.lock()) {
      std::erase_if(*registry, [&](const SharedRegion& region) { return region.id == id_; });
    }
  }
  std::byte* data() const override { return mine_; }
  std::size_t size() const override { return bytes_; }

 private:
  ShmSegment segment_;
  std::byte* mine_;
  std::size_t bytes_;
  std::weak_ptr<SharedRegistry> registry_;
  std::uint32_t id_;
};

// Ranks of one machine through one shared-memory segment.
class ShmCommunicator final : public Communicator::Impl {
 public:
  ShmCommunicator(int rank, int world_size, std::string_view job_id, const CommOptions& options)
      : config_(Config::from_environment()), rank_(rank), world_size_(world_size), job_id_(job_id) {
    if (world_size < 1 || world_size > kMaxWorldSize) {
      fail(ErrorCode::invalid_argument, "world size " + std::to_string(world_size) + " is out of range (1.." +
                                            std::to_string(kMaxWorldSize) + ")");
    }
    if (rank < 0 || rank >= world_size) {
      fail(ErrorCode::invalid_argument, "rank " + std::to_string(rank) + " is out of range for world size " +
                                            std::to_string(world_size));
    }
    if (job_id.empty()) fail(ErrorCode::invalid_argument, "job id is empty");
    if (options.timeout.count() < 0) fail(ErrorCode::invalid_argument, "timeout must not be negative");
    const double timeout = options.timeout.count() > 0 ? options.timeout.count() : config_.timeout_seconds;
    const std::size_t chunk = options.chunk_bytes != 0 ? options.chunk_bytes : config_.chunk_bytes;
    if (chunk < 4096 || chunk > (std::size_t{1} << 30)) {
      fail(ErrorCode::invalid_argument,
           "chunk size " + std::to_string(chunk) + " bytes is out of range (4096 .. 1 GiB)");
    }
    chunk_bytes_ = chunk / 64 * 64;  // whole cache lines, so every dtype fits evenly
    (void)select_all_reduce_algorithm(config_.algorithm, 0, DataType::f32, world_size, 0);  // reject a bad TPCOMM_ALGO now
    fork_generation_ = g_fork_generation.load(std::memory_order_relaxed);
    options_ = options;
    options_.timeout = std::chrono::duration<double>(timeout);
    options_.chunk_bytes = chunk_bytes_;
    rendezvous(job_id, timeout);
    channel_.policy().timeout = std::chrono::duration<double>(timeout);
    channel_.copy_policy().measured_stores = config_.measured_stores;
    channel_.copy_policy().streaming_min_bytes = config_.streaming_min_bytes;
    channel_.copy_policy().claim_max_bytes = config_.claim_max_bytes;
    channel_.copy_policy().own_from_input_max_bytes = config_.own_from_input_max_bytes;
    channel_.copy_policy().measured_results = config_.measured_results;
    channel_.copy_policy().result_streaming_min_bytes = config_.result_streaming_min_bytes;
    // The default spin follows the CPUs the ranks share (default_spin_count);
    // every rank published its own at the rendezvous, which all have passed.
    std::vector<std::uint64_t> rank_cpus;
    for (int r = 0; r < world_size; ++r) rank_cpus.push_back(channel_.header().ranks[r].cpus.load(std::memory_order_relaxed));
    channel_.policy().spin_count =
        config_.spin_count >= 0 ? config_.spin_count : default_spin_count(rank_cpus, machine_cpus());
    // Helper threads only where every rank can have CPUs of its own for them.
    set_threads(config_.threads > 0 ? config_.threads : std::clamp(online_cpus() / world_size, 1, 4));
  }

  int threads() const { return threads_; }

  void set_threads(int threads) {
    threads_ = threads;
    channel_.copy_policy().workers = nullptr;
    channel_.copy_policy().split_min_bytes = config_.threads_min_bytes;
    workers_.reset();
  }

  // The helper threads start with the first all_reduce large enough to use
  // them: a program of small messages (or world size 1) never has any.
  void start_workers_for(std::size_t bytes) {
    if (threads_ > 1 && !workers_ && bytes >= config_.threads_min_bytes) {
      workers_ = std::make_unique<WorkerPool>(threads_);
      channel_.copy_policy().workers = workers_.get();
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::size_t chunk_bytes() const override { return chunk_bytes_; }
  std::chrono::duration<double> timeout() const override { return channel_.policy().timeout; }
  void set_timeout(std::chrono::duration<double> timeout) override {
    if (!(timeout.count() > 0)) fail(ErrorCode::invalid_argument, "timeout must be positive");
    channel_.policy().timeout = timeout;
  }

  std::string_view all_reduce_algorithm(std::size_t bytes, DataType dtype) const override {
    (void)dtype_size(dtype);  // throws for an unknown dtype
    return select_algorithm(bytes, dtype).name;
  }

  const AllReduceAlgorithm& select_algorithm(std::size_t bytes, DataType dtype) const {
    return select_all_reduce_algorithm(config_.algorithm, bytes, dtype, world_size_, config_.one_shot_max_bytes);
  }

  void all_reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op) override {
    check_usable("all_reduce");
    with_rejection(CollectiveKind::all_reduce, [&] {
      check_usable("all_reduce");
      const std::size_t element = dtype_size(dtype);  // throws for an unknown dtype
      (void)redop_name(op);                            // throws for an unknown op
      if (op == ReduceOp::avg && !is_floating(dtype)) {
        fail(ErrorCode::invalid_argument, prefix("all_reduce") + "op avg is not defined for integer dtype " +
                                              std::string(dtype_name(dtype)) + " (use sum and divide)");
      }
      if (count > SIZE_MAX / element) {
        fail(ErrorCode::invalid_argument, prefix("all_reduce") + "count " + std::to_string(count) + " x " +
                                              std::to_string(element) + " bytes overflows size_t");
      }
      const std::size_t bytes = count * element;
      if (count == 0) {
        CallDescriptor call;
        call.kind = CollectiveKind::all_reduce;
        call.dtype = static_cast<std::uint8_t>(dtype);
        call.op = static_cast<std::uint8_t>(op);
        call.algorithm = select_algorithm(0, dtype).id;
        descriptor_round(call);
        return;
      }
      if (send == nullptr || recv == nullptr) {
        fail(ErrorCode::invalid_argument, prefix("all_reduce") + (send == nullptr ? "send" : "recv") +
                                              " buffer is null with count " + std::to_string(count));
      }
      const auto* send_bytes = static_cast<const std::byte*>(send);
      auto* recv_bytes = static_cast<std::byte*>(recv);
      if (send_bytes != recv_bytes && ranges_overlap(send_bytes, bytes, recv_bytes, bytes)) {
        fail(ErrorCode::invalid_argument, prefix("all_reduce") +
                                              "send and recv buffers partially overlap (in-place needs send == recv; "
                                              "out-of-place needs disjoint buffers)");
      }
      if (world_size_ == 1) {
        // The fold of one contribution is the contribution itself (avg: x / 1 == x).
        if (send_bytes != recv_bytes) std::memcpy(recv_bytes, send_bytes, bytes);
        return;
      }
      start_workers_for(bytes);
      if (const SharedRegion* region = shared_region_of(send_bytes, bytes)) {
        const bool in_place = send_bytes == recv_bytes;
        const std::size_t offset = static_cast<std::size_t>(send_bytes - (region->regions + rank_ * region->stride));
        CallDescriptor call;
        call.kind = CollectiveKind::all_reduce;
        call.dtype = static_cast<std::uint8_t>(dtype);
        call.op = static_cast<std::uint8_t>(op);
        call.algorithm = in_place ? 4 : 3;
        call.count = count;
        call.location = (std::uint64_t{region->id} << 48) | offset;
        const ZeroCopyArgs args{region->regions, region->stride, offset, recv_bytes, count, dtype, op};
        run_guarded([&] {
          if (in_place) zero_copy_two_shot_all_reduce(channel_, args, call);
          else zero_copy_one_shot_all_reduce(channel_, args, call);
        });
        return;
      }
      const AllReduceAlgorithm& algorithm = select_algorithm(bytes, dtype);
      CallDescriptor call;
      call.kind = CollectiveKind::all_reduce;
      call.dtype = static_cast<std::uint8_t>(dtype);
      call.op = static_cast<std::uint8_t>(op);
      call.algorithm = algorithm.id;
      call.count = count;
      run_guarded([&] { algorithm.run(channel_, AllReduceArgs{send_bytes, recv_bytes, count, dtype, op}, call); });
    });
  }

  void barrier() override {
    check_usable("barrier");
    if (world_size_ == 1) return;
    CallDescriptor call;
    call.kind = CollectiveKind::barrier;
    run_guarded([&] { detail::barrier(channel_, call); });
  }

  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, ReduceOp op) override {
    check_usable("reduce_scatter");
    with_rejection(CollectiveKind::reduce_scatter, [&] {
      const std::vector<std::size_t> counts(static_cast<std::size_t>(world_size_), recv_count);
      reduce_scatter_common(CollectiveKind::reduce_scatter, send, recv, counts, dtype, op, recv_count);
    });
  }

  void reduce_scatterv(const void* send, void* recv, std::span<const std::size_t> counts, DataType dtype,
                       ReduceOp op) override {
    check_usable("reduce_scatterv");
    with_rejection(CollectiveKind::reduce_scatterv, [&] {
      reduce_scatter_common(CollectiveKind::reduce_scatterv, send, recv, counts, dtype, op, 0);
    });
  }

  void all_gather(const void* send, void* recv, std::size_t send_count, DataType dtype) override {
    check_usable("all_gather");
    with_rejection(CollectiveKind::all_gather, [&] {
      const std::vector<std::size_t> counts(static_cast<std::size_t>(world_size_), send_count);
      all_gather_common(CollectiveKind::all_gather, send, recv, counts, dtype, send_count);
    });
  }

  void all_gatherv(const void* send, void* recv, std::span<const std::size_t> counts, DataType dtype) override {
    check_usable("all_gatherv");
    with_rejection(CollectiveKind::all_gatherv, [&] {
      all_gather_common(CollectiveKind::all_gatherv, send, recv, counts, dtype, 0);
    });
  }

  void broadcast(const void* send, void* recv, std::size_t count, DataType dtype, int root) override {
    check_usable("broadcast");
    with_rejection(CollectiveKind::broadcast, [&] {
      const std::string_view name = "broadcast";
      check_usable(name);
      const std::size_t bytes = byte_count(name, count, dtype);
      check_root(name, root);
      if (bytes == 0) {
        descriptor_round(describe(CollectiveKind::broadcast, count, dtype, ReduceOp::sum, root));
        return;
      }
      require_buffer(name, recv, "recv");
      if (rank_ == root) {
        require_buffer(name, send, "send");
        require_same_or_disjoint(name, send, bytes, recv, bytes);
      }
      run_collective(CollectiveKind::broadcast, count, dtype, ReduceOp::sum, root,
                     {.send = as_bytes(send), .recv = as_bytes(recv), .count = count, .dtype = dtype, .root = root},
                     &detail::broadcast);
    });
  }

  void reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op, int root) override {
    check_usable("reduce");
    with_rejection(CollectiveKind::reduce, [&] {
      const std::string_view name = "reduce";
      check_usable(name);
      const std::size_t bytes = byte_count(name, count, dtype);
      check_op(name, dtype, op);
      check_root(name, root);
      if (bytes == 0) {
        descriptor_round(describe(CollectiveKind::reduce, count, dtype, op, root));
        return;
      }
      require_buffer(name, send, "send");
      if (rank_ == root) {
        require_buffer(name, recv, "recv");
        require_same_or_disjoint(name, send, bytes, recv, bytes);
      }
      run_collective(
          CollectiveKind::reduce, count, dtype, op, root,
          {.send = as_bytes(send), .recv = as_bytes(recv), .count = count, .dtype = dtype, .op = op, .root = root},
          &detail::reduce);
    });
  }

  void gather(const void* send, void* recv, std::size_t send_count, DataType dtype, int root) override {
    check_usable("gather");
    with_rejection(CollectiveKind::gather, [&] {
      const std::string_view name = "gather";
      check_usable(name);
      const std::size_t bytes = byte_count(name, send_count, dtype);
      const std::size_t total = total_bytes(name, bytes);
      check_root(name, root);
      if (bytes == 0) {
        descriptor_round(describe(CollectiveKind::gather, send_count, dtype, ReduceOp::sum, root));
        return;
      }
      require_buffer(name, send, "send");
      if (rank_ == root) {
        require_buffer(name, recv, "recv");
        require_placed_or_disjoint(name, send, bytes, recv, total, static_cast<std::size_t>(root) * bytes,
                                   "send == recv + root * send_count");
      }
      run_collective(CollectiveKind::gather, send_count, dtype, ReduceOp::sum, root,
                     {.send = as_bytes(send), .recv = as_bytes(recv), .count = send_count, .dtype = dtype, .root = root},
                     &detail::gather);
    });
  }

  void scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, int root) override {
    check_usable("scatter");
    with_rejection(CollectiveKind::scatter, [&] {
      const std::string_view name = "scatter";
      check_usable(name);
      const std::size_t bytes = byte_count(name, recv_count, dtype);
      const std::size_t total = total_bytes(name, bytes);
      check_root(name, root);
      if (bytes == 0) {
        descriptor_round(describe(CollectiveKind::scatter, recv_count, dtype, ReduceOp::sum, root));
        return;
      }
      require_buffer(name, recv, "recv");
      if (rank_ == root) {
        require_buffer(name, send, "send");
        require_placed_or_disjoint(name, recv, bytes, send, total, static_cast<std::size_t>(root) * bytes,
                                   "recv == send + root * recv_count");
      }
      run_collective(CollectiveKind::scatter, recv_count, dtype, ReduceOp::sum, root,
                     {.send = as_bytes(send), .recv = as_bytes(recv), .count = recv_count, .dtype = dtype, .root = root},
                     &detail::scatter);
    });
  }

  void all_to_all(const void* send, void* recv, std::size_t count, DataType dtype) override {
    check_usable("all_to_all");
    with_rejection(CollectiveKind::all_to_all, [&] {
      const std::string_view name = "all_to_all";
      check_usable(name);
      const std::size_t total = total_bytes(name, byte_count(name, count, dtype));
      if (total == 0) {
        descriptor_round(describe(CollectiveKind::all_to_all, count, dtype, ReduceOp::sum, -1));
        return;
      }
      require_buffer(name, send, "send");
      require_buffer(name, recv, "recv");
      require_same_or_disjoint(name, send, total, recv, total);
      run_collective(CollectiveKind::all_to_all, count, dtype, ReduceOp::sum, -1,
                     {.send = as_bytes(send), .recv = as_bytes(recv), .count = count, .dtype = dtype},
                     &detail::all_to_all);
    });
  }

  void all_to_allv(const void* send, std::span<const std::size_t> send_counts,
                   std::span<const std::size_t> send_displs, void* recv, std::span<const std::size_t> recv_counts,
                   std::span<const std::size_t> recv_displs, DataType dtype) override {
    check_usable("all_to_allv");
    with_rejection(CollectiveKind::all_to_allv, [&] {
      const std::string_view name = "all_to_allv";
      check_usable(name);
      const std::size_t element = dtype_size(dtype);
      for (auto [array, label] : {std::pair{send_counts, "send_counts"}, std::pair{send_displs, "send_displs"},
                                  std::pair{recv_counts, "recv_counts"}, std::pair{recv_displs, "recv_displs"}}) {
        require_rank_array(name, array, label);
      }
      const std::size_t send_extent = extent(name, send_counts, send_displs, element, "send");
      const std::size_t recv_extent = extent(name, recv_counts, recv_displs, element, "recv");
      if (send_extent > 0) require_buffer(name, send, "send");
      if (recv_extent > 0) require_buffer(name, recv, "recv");
      if (send_extent > 0 && recv_extent > 0 &&
          ranges_overlap(as_bytes(send), send_extent, as_bytes(recv), recv_extent)) {
        fail(ErrorCode::invalid_argument, prefix(name) + "send and recv buffers overlap (all_to_allv needs disjoint "
                                                         "buffers: displacements may differ between them)");
      }
      CollectiveArgs args{.send = as_bytes(send), .recv = as_bytes(recv), .dtype = dtype};
      args.send_counts = send_counts;
      args.send_displs = send_displs;
      args.recv_counts = recv_counts;
      args.recv_displs = recv_displs;
      // Ranks hold different rows of the count matrix; the descriptor carries
      // only the dtype, and the counts are cross-checked inside the collective.
      run_collective(CollectiveKind::all_to_allv, 0, dtype, ReduceOp::sum, -1, args, &detail::all_to_allv);
    });
  }

  std::optional<Communicator> split(int color, int key) override {
    const std::string_view name = "split";
    check_usable(name);
    if (color < 0 && color != kUndefinedColor) {
      fail(ErrorCode::invalid_argument, prefix(name) + "color " + std::to_string(color) +
                                            " is negative (use a color >= 0, or kUndefinedColor to opt out)");
    }
    // Everyone learns everyone's (color, key) with one all_gather.
    const std::int64_t mine[2] = {color, key};
    std::vector<std::int64_t> all(2 * static_cast<std::size_t>(world_size_));
    all_gather(mine, all.data(), 2, DataType::i64);
    const std::uint64_t split_index = split_count_++;  // same on every rank: splits are collective
    if (color == kUndefinedColor) return std::nullopt;
    std::vector<std::pair<std::int64_t, int>> members;  // (key, parent rank) of my color
    for (int r = 0; r < world_size_; ++r) {
      if (all[2 * static_cast<std::size_t>(r)] == color) members.emplace_back(all[2 * static_cast<std::size_t>(r) + 1], r);
    }
    std::sort(members.begin(), members.end());
    int new_rank = 0;
    while (members[static_cast<std::size_t>(new_rank)].second != rank_) ++new_rank;
    // The child's job id extends the parent's, so groups of different parents,
    // splits or colors never share a segment name.
    const std::string child_job = job_id_ + ".s" + std::to_string(split_index) + ".c" + std::to_string(color);
    CommOptions child_options = options_;
    child_options.timeout = timeout();  // the current one, set_timeout included
    Communicator child = Communicator::create(new_rank, static_cast<int>(members.size()), child_job, child_options);
    // A group is as oversubscribed as its parent: its siblings share the CPUs.
    auto& child_impl = static_cast<ShmCommunicator&>(CommunicatorImplementation::impl_of(child));
    child_impl.channel_.policy().spin_count = std::min(child_impl.channel_.policy().spin_count,
                                                       channel_.policy().spin_count);
    child_impl.set_threads(std::min(child_impl.threads(), threads()));
    return child;
  }

  SharedBuffer alloc_shared(std::size_t bytes) override {
    const std::string_view name = "alloc_shared";
    check_usable(name);
    if (bytes == 0 || bytes > (std::size_t{1} << 40)) {
      fail(ErrorCode::invalid_argument, prefix(name) + "size " + std::to_string(bytes) +
                                            " bytes is out of range (1 .. 1 TiB)");
    }
    // Every rank must ask for the same size: compare through the channel.
    std::uint64_t sizes[2] = {bytes, bytes};
    all_reduce(&sizes[0], &sizes[0], 1, DataType::i64, ReduceOp::min);
    all_reduce(&sizes[1], &sizes[1], 1, DataType::i64, ReduceOp::max);
    if (sizes[0] != sizes[1]) {
      fail(ErrorCode::mismatch, prefix(name) + "ranks asked for different sizes (" + std::to_string(sizes[0]) +
                                    " .. " + std::to_string(sizes[1]) + " bytes)");
    }
    const std::uint32_t id = ++shared_count_;
    const std::size_t stride = SegmentLayout::round_up(bytes, kPage);
    ShmSegment::OpenResult result{};
    ShmSegment segment = ShmSegment::create_or_open(segment_name_ + ".b" + std::to_string(id),
                                                    stride * static_cast<std::size_t>(world_size_),
                                                    timeout().count(), &result);
    barrier();  // every rank has mapped it: the name can go
    if (result == ShmSegment::OpenResult::created) segment.unlink();
    else segment.forget_name();
    std::byte* regions = segment.data();
    registry_->push_back({id, regions, stride, bytes});
    return SharedBuffer(std::make_shared<ShmSharedState>(std::move(segment), regions + rank_ * stride, bytes,
                                                         registry_, id));
  }

  std::optional<Communicator> new_group(std::span<const int> ranks) override {
    const std::string_view name = "new_group";
    check_usable(name);
    std::vector<bool> seen(static_cast<std::size_t>(world_size_), false);
    int my_index = -1;
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      const int r = ranks[i];
      if (r < 0 || r >= world_size_ || seen[static_cast<std::size_t>(r)]) {
        fail(ErrorCode::invalid_argument, prefix(name) + "rank list entry " + std::to_string(r) +
                                              " is out of range (0.." + std::to_string(world_size_ - 1) +
                                              ") or repeated");
      }
      seen[static_cast<std::size_t>(r)] = true;
      if (r == rank_) my_index = static_cast<int>(i);
    }
    // Every rank must pass the same list: compare a hash of it across ranks.
    std::vector<std::size_t> as_sizes(ranks.begin(), ranks.end());
    const std::int64_t hash = static_cast<std::int64_t>(hash_counts(as_sizes) >> 1);
    std::int64_t low = hash, high = hash;
    all_reduce(&low, &low, 1, DataType::i64, ReduceOp::min);
    all_reduce(&high, &high, 1, DataType::i64, ReduceOp::max);
    if (low != high) {
      fail(ErrorCode::mismatch, prefix(name) + "ranks passed different rank lists (this rank passed " +
                                    std::to_string(ranks.size()) + " ranks)");
    }
    return split(my_index >= 0 ? 0 : kUndefinedColor, my_index);
  }

  void batch(std::span<const Communicator::PointToPoint> operations) override {
    const std::string_view name = "send/recv";
    check_usable(name);
    std::vector<Transfer> transfers;
    transfers.reserve(operations.size());
    for (const auto& op : operations) {
      const std::size_t bytes = byte_count(name, op.count, op.dtype);
      if (op.peer < 0 || op.peer >= world_size_ || op.peer == rank_) {
        fail(ErrorCode::invalid_argument, prefix(name) + "peer " + std::to_string(op.peer) +
                                              " is out of range (0.." + std::to_string(world_size_ - 1) +
                                              ", not this rank)");
      }
      if (bytes > 0) require_buffer(name, op.buffer, op.kind == Communicator::PointToPoint::Kind::send ? "send" : "recv");
      transfers.push_back({op.kind == Communicator::PointToPoint::Kind::send, static_cast<std::byte*>(op.buffer),
                           bytes, op.dtype, op.peer});
    }
    if (transfers.empty()) return;
    CallDescriptor call;
    call.kind = CollectiveKind::send_recv;
    run_guarded([&] { run_transfers(channel_, transfers, call); });
  }

 private:
  using CollectiveFunction = void (*)(ShmChannel&, const CollectiveArgs&, const CallDescriptor&);

  static std::byte* as_bytes(const void* p) { return static_cast<std::byte*>(const_cast<void*>(p)); }

  std::size_t byte_count(std::string_view name, std::size_t count, DataType dtype) const {
    const std::size_t element = dtype_size(dtype);  // throws for an unknown dtype
    if (count > SIZE_MAX / element) {
      fail(ErrorCode::invalid_argument, prefix(name) + "count " + std::to_string(count) + " x " +
                                            std::to_string(element) + " bytes overflows size_t");
    }
    return count * element;
  }

  std::size_t total_bytes(std::string_view name, std::size_t block_bytes) const {
    if (block_bytes > SIZE_MAX / static_cast<std::size_t>(world_size_)) {
      fail(ErrorCode::invalid_argument, prefix(name) + "world_size x block of " + std::to_string(block_bytes) +
                                            " bytes overflows size_t");
    }
    return block_bytes * static_cast<std::size_t>(world_size_);
  }

  void check_op(std::string_view name, DataType dtype, ReduceOp op) const {
    (void)redop_name(op);  // throws for an unknown op
    if (op == ReduceOp::avg && !is_floating(dtype)) {
      fail(ErrorCode::invalid_argument, prefix(name) + "op avg is not defined for integer dtype " +
                                            std::string(dtype_name(dtype)) + " (use sum and divide)");
    }
  }

  void check_root(std::string_view name, int root) const {
    if (root < 0 || root >= world_size_) {
      fail(ErrorCode::invalid_argument, prefix(name) + "root " + std::to_string(root) + " is out of range (0.." +
                                            std::to_string(world_size_ - 1) + ")");
    }
  }

  void require_buffer(std::string_view name, const void* p, const char* which) const {
    if (p == nullptr) fail(ErrorCode::invalid_argument, prefix(name) + which + " buffer is null with a non-zero count");
  }

  void require_rank_array(std::string_view name, std::span<const std::size_t> array, const char* label) const {
    if (array.size() != static_cast<std::size_t>(world_size_) || array.data() == nullptr) {
      fail(ErrorCode::invalid_argument, prefix(name) + label + " must have world_size (" +
                                            std::to_string(world_size_) + ") entries, got " +
                                            std::to_string(array.size()));
    }
  }

  // Bytes spanned by blocks (counts[i] elements at displs[i]), overflow-checked.
  std::size_t extent(std::string_view name, std::span<const std::size_t> counts, std::span<const std::size_t> displs,
                     std::size_t element, const char* which) const {
    std::size_t end = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] == 0) continue;
      if (displs[i] > SIZE_MAX - counts[i] || displs[i] + counts[i] > SIZE_MAX / element) {
        fail(ErrorCode::invalid_argument, prefix(name) + which + " block " + std::to_string(i) + " overflows size_t");
      }
      end = std::max(end, (displs[i] + counts[i]) * element);
    }
    return end;
  }

  // In-place (a == b) or disjoint; anything else is an error.
  void require_same_or_disjoint(std::string_view name, const void* a, std::size_t a_bytes, const void* b,
                                std::size_t b_bytes) const {
    if (a != b && ranges_overlap(as_bytes(a), a_bytes, as_bytes(b), b_bytes)) {
      fail(ErrorCode::invalid_argument, prefix(name) + "send and recv buffers partially overlap (in-place needs "
                                                       "send == recv; out-of-place needs disjoint buffers)");
    }
  }

  // `part` (part_bytes) either sits exactly at whole + offset (in place) or is
  // disjoint from whole (whole_bytes).
  void require_placed_or_disjoint(std::string_view name, const void* part, std::size_t part_bytes, const void* whole,
                                  std::size_t whole_bytes, std::size_t offset, const char* rule) const {
    if (as_bytes(part) == as_bytes(whole) + offset) return;
    if (ranges_overlap(as_bytes(part), part_bytes, as_bytes(whole), whole_bytes)) {
      fail(ErrorCode::invalid_argument, prefix(name) + "send and recv buffers overlap but not as the in-place rule (" +
                                            rule + ") requires");
    }
  }

  static std::uint64_t hash_counts(std::span<const std::size_t> counts) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (const std::size_t c : counts) hash = (hash ^ c) * 0x100000001b3ull;
    return hash;
  }

  void reduce_scatter_common(CollectiveKind kind, const void* send, void* recv, std::span<const std::size_t> counts,
                             DataType dtype, ReduceOp op, std::size_t equal_count) {
    const std::string_view name = collective_name(kind);
    check_usable(name);
    require_rank_array(name, counts, "recv_counts");
    const std::size_t element = dtype_size(dtype);
    check_op(name, dtype, op);
    std::size_t total = 0, before_me = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
      if (r == static_cast<std::size_t>(rank_)) before_me = total;
      if (counts[r] > SIZE_MAX / element - total) fail(ErrorCode::invalid_argument, prefix(name) + "counts overflow size_t");
      total += counts[r];
    }
    if (total == 0) {
      descriptor_round(describe(kind, kind == CollectiveKind::reduce_scatter ? equal_count : hash_counts(counts), dtype, op, -1));
      return;
    }
    const std::size_t my_bytes = counts[static_cast<std::size_t>(rank_)] * element;
    require_buffer(name, send, "send");
    if (my_bytes > 0) require_buffer(name, recv, "recv");
    if (my_bytes > 0) {
      require_placed_or_disjoint(name, recv, my_bytes, send, total * element, before_me * element,
                                 "recv == send + offset of this rank's block");
    }
    CollectiveArgs args{.send = as_bytes(send), .recv = as_bytes(recv), .count = equal_count, .dtype = dtype, .op = op};
    args.counts = counts;
    const std::uint64_t described = kind == CollectiveKind::reduce_scatter ? equal_count : hash_counts(counts);
    run_collective(kind, described, dtype, op, -1, args,
                   kind == CollectiveKind::reduce_scatter ? &detail::reduce_scatter : &detail::reduce_scatterv);
  }

  void all_gather_common(CollectiveKind kind, const void* send, void* recv, std::span<const std::size_t> counts,
                         DataType dtype, std::size_t equal_count) {
    const std::string_view name = collective_name(kind);
    check_usable(name);
    require_rank_array(name, counts, "counts");
    const std::size_t element = dtype_size(dtype);
    std::size_t total = 0, before_me = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
      if (r == static_cast<std::size_t>(rank_)) before_me = total;
      if (counts[r] > SIZE_MAX / element - total) fail(ErrorCode::invalid_argument, prefix(name) + "counts overflow size_t");
      total += counts[r];
    }
    if (total == 0) {
      descriptor_round(describe(kind, kind == CollectiveKind::all_gather ? equal_count : hash_counts(counts), dtype, ReduceOp::sum, -1));
      return;
    }
    const std::size_t my_bytes = counts[static_cast<std::size_t>(rank_)] * element;
    require_buffer(name, recv, "recv");
    if (my_bytes > 0) {
      require_buffer(name, send, "send");
      require_placed_or_disjoint(name, send, my_bytes, recv, total * element, before_me * element,
                                 "send == recv + offset of this rank's block");
    }
    CollectiveArgs args{.send = as_bytes(send), .recv = as_bytes(recv), .count = equal_count, .dtype = dtype};
    args.counts = counts;
    const std::uint64_t described = kind == CollectiveKind::all_gather ? equal_count : hash_counts(counts);
    run_collective(kind, described, dtype, ReduceOp::sum, -1, args,
                   kind == CollectiveKind::all_gather ? &detail::all_gather : &detail::all_gatherv);
  }

  static CallDescriptor describe(CollectiveKind kind, std::uint64_t count, DataType dtype, ReduceOp op, int root) {
    CallDescriptor call;
    call.kind = kind;
    call.dtype = static_cast<std::uint8_t>(dtype);
    call.op = static_cast<std::uint8_t>(op);
    call.root = root;
    call.count = count;
    return call;
  }

  // A call that moves no data still takes part in one round carrying its
  // descriptor, so that a rank calling with count 0 while another passes a
  // non-zero count is a mismatch on every rank, not a hang.
  void descriptor_round(const CallDescriptor& call) {
    if (world_size_ == 1) return;
    run_guarded([&] { detail::barrier(channel_, call); });
  }

  // Builds the call descriptor and runs the collective under the failure guard.
  // A single rank runs the same code: its rounds have no peers to wait for.
  void run_collective(CollectiveKind kind, std::uint64_t described_count, DataType dtype, ReduceOp op, int root,
                      const CollectiveArgs& args, CollectiveFunction function) {
    CallDescriptor call;
    call.kind = kind;
    call.dtype = static_cast<std::uint8_t>(dtype);
    call.op = static_cast<std::uint8_t>(op);
    call.root = root;
    call.count = described_count;
    run_guarded([&] { function(channel_, args, call); });
  }

  // The shared buffer whose region of this rank holds [p, p + bytes), if any.
  const SharedRegion* shared_region_of(const std::byte* p, std::size_t bytes) const {
    for (const SharedRegion& region : *registry_) {
      const std::byte* mine = region.regions + rank_ * region.stride;
      if (p >= mine && p < mine + region.bytes) {
        if (bytes > static_cast<std::size_t>(mine + region.bytes - p)) {
          fail(ErrorCode::invalid_argument, prefix("all_reduce") + "buffer runs past the end of its shared buffer");
        }
        return &region;
      }
    }
    return nullptr;
  }

  static bool is_floating(DataType dtype) {
    return dtype == DataType::f32 || dtype == DataType::f64 || dtype == DataType::f16 || dtype == DataType::bf16;
  }

  std::string prefix(std::string_view collective) const {
    return "rank " + std::to_string(rank_) + ": " + std::string(collective) + ": ";
  }

  // Fails fast if an earlier error failed this communicator, or if this
  // process is a fork of the one that created it.
  void check_usable(std::string_view collective) {
    if (failure_) throw Error(ErrorCode::comm_failed, prefix(collective) +
                                                          "communicator failed earlier and cannot be used: " +
                                                          failure_->what());
    if (g_fork_generation.load(std::memory_order_relaxed) != fork_generation_) {
      fail(ErrorCode::invalid_argument, prefix(collective) +
                                            "communicator used from a forked child process; create a new one there");
    }
    // Another rank may have failed the communicator (timeout, dead peer)
    // while this one was away: fail like the others, never finish a call with
    // data the others have given up on. One load of a rarely written line.
    if (channel_.header().abort.code.load(std::memory_order_acquire) != 0) {
      CallDescriptor call;
      call.kind = CollectiveKind::barrier;
      run_guarded([&] { channel_.throw_if_aborted(call); });
    }
  }

  // Runs argument validation and the collective. An invalid_argument raised by
  // this rank's validation (before any round) is announced to the other ranks
  // with a rejection round, so that every rank fails the call alike and the
  // communicator stays usable, even when only this rank could see the problem.
  template <class Body>
  void with_rejection(CollectiveKind kind, Body body) {
    in_protocol_ = false;
    try {
      body();
    } catch (const Error& error) {
      const bool from_protocol = in_protocol_;
      in_protocol_ = false;
      if (error.code() == ErrorCode::invalid_argument && !from_protocol && world_size_ > 1 && !failure_) {
        CallDescriptor call;
        call.kind = kind;
        run_guarded([&] { channel_.publish_rejection(call, error.what()); });
      }
      throw;
    }
  }

  // Runs a collective; any error that may have left ranks mid-protocol fails
  // the communicator for good (later calls fail fast with the same message).
  template <class Body>
  void run_guarded(Body body) {
    in_protocol_ = true;  // stays set on an exception: with_rejection reads it
    try {
      body();
      in_protocol_ = false;
    } catch (const Error& error) {
      // invalid_argument here is a peer's rejected arguments: nothing moved,
      // every rank finished the same round, the communicator stays usable.
      if (error.code() != ErrorCode::invalid_argument) failure_.emplace(error);
      throw;
    }
  }

  // How long a rank found dead in the rendezvous may stay unreplaced. A job
  // whose explicit id is reused after a crash finds the crashed job's segment,
  // its slots held by dead processes; the new job's processes take those
  // slots over as they arrive. A dead holder that no process replaces within
  // this time is this job's own dead rank: every rank is told. A holder seen
  // alive by this rank and dead later is this job's at once: no grace.
  static constexpr double kReplacementGraceSeconds = 2.0;

  void rendezvous(std::string_view job_id, double timeout) {
    const std::string token = job_token(job_id);
    const std::string name = "/tpcomm-" + std::to_string(::getuid()) + "-" + token + "-" +
                             std::to_string(next_instance(token)) + "-n" + std::to_string(world_size_);
    const std::string job = "rank " + std::to_string(rank_) + ": rendezvous of job '" + std::string(job_id) + "'";
    segment_name_ = name;
    const SegmentLayout layout = SegmentLayout::compute(world_size_, chunk_bytes_);
    const auto pid = static_cast<std::int32_t>(::getpid());
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    remove_stale_segments(name);

    // 1. Create the segment, or join the one of this job. A segment under the
    //    name is always initialised (see ShmSegment::create_published); one
    //    that is not, or whose every recorded rank died after its rendezvous
    //    failed or completed, belongs to no live job and is replaced.
    bool created = false;
    for (;;) {
      auto fresh = ShmSegment::create_published(name, layout.total_bytes, [&](std::byte* data) {
        auto* header = reinterpret_cast<SegmentHeader*>(data);
        header->world_size = static_cast<std::uint32_t>(world_size_);
        header->chunk_bytes = chunk_bytes_;
        header->total_bytes = layout.total_bytes;
        header->ranks[rank_].pid.store(pid, std::memory_order_relaxed);
        header->ranks[rank_].cpus.store(affinity_bits(), std::memory_order_relaxed);
        header->ranks[rank_].arrived.store(1, std::memory_order_relaxed);
        header->magic.store(kSegmentMagic, std::memory_order_release);
      });
      if (fresh) {
        segment_ = std::move(*fresh);
        created = true;
        break;
      }
      std::optional<ShmSegment> found = ShmSegment::open_existing(name);
      if (!found) continue;  // removed since: try to create it again
      const auto* header = reinterpret_cast<const SegmentHeader*>(found->data());
      const bool initialised = found->size() >= sizeof(SegmentHeader) &&
                               header->magic.load(std::memory_order_acquire) == kSegmentMagic;
      if (!initialised) {
        found->unlink();  // not made by a tpcomm rendezvous: garbage
        continue;
      }
      // A dead job's segment that no rank can still reach (is_stale) is
      // replaced; a young one is joined (its dead slots are taken over, or
      // reported) or, if it was made for another size, reported as a mismatch.
      if (is_stale(*header, found->age_seconds())) {
        found->unlink();
        continue;
      }
      if (found->size() != layout.total_bytes || header->world_size != static_cast<std::uint32_t>(world_size_) ||
          header->chunk_bytes != chunk_bytes_) {
        found->forget_name();  // the live job that made it keeps it
        const Error error(ErrorCode::mismatch, "rank " + std::to_string(rank_) + ": ranks disagree: this rank has world size " +
                                      std::to_string(world_size_) + " and chunk " + std::to_string(chunk_bytes_) +
                                      " bytes, the segment was made for world size " +
                                      std::to_string(header->world_size) + " and chunk " +
                                      std::to_string(header->chunk_bytes));
        post_rendezvous_failure(name, rank_, error);
        throw error;
      }
      if (header->completed.load(std::memory_order_acquire) != 0) {
        // A live job finished its rendezvous and is removing the name.
        found->forget_name();
        if (elapsed() > timeout) {
          fail(ErrorCode::timeout, job + " found the segment of a job that already started");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      segment_ = std::move(*found);
      break;
    }
    auto* header = reinterpret_cast<SegmentHeader*>(segment_.data());
    // On failure the name stays while ranks are still to come (unless the
    // deadline has passed), so that they find the failure recorded and fail
    // at once instead of starting a new rendezvous that waits for the dead.
    // The last rank to arrive removes it; if one never comes, tpcomm-run or
    // the next job's sweep does (every rank recorded in it is dead by then).
    auto release_name_on_failure = [&](ErrorCode code) {
      bool all_arrived = true;
      for (int r = 0; r < world_size_; ++r) {
        if (header->ranks[r].arrived.load(std::memory_order_seq_cst) == 0) all_arrived = false;
      }
      if (all_arrived || code == ErrorCode::timeout) {
        segment_.unlink();
      } else {
        segment_.forget_name();
      }
    };
    // A failure another rank recorded first: that is the cause every rank
    // reports (a rank that fails and exits looks dead to the others next).
    auto throw_recorded_failure = [&](std::uint32_t code) {
      for (int i = 0; i < 100000 && header->abort.message_ready.load(std::memory_order_acquire) == 0; ++i) {
        std::this_thread::yield();
      }
      release_name_on_failure(static_cast<ErrorCode>(code));
      throw Error(static_cast<ErrorCode>(code), job + " failed because rank " +
                                                    std::to_string(header->abort.rank.load()) +
                                                    " reported: " + header->abort.message);
    };
    // The first rank to give up records why, so the others report the same cause.
    auto fail_rendezvous = [&](const Error& error) {
      if (!record_failure(header->abort, error.code(), rank_, error.what())) {
        throw_recorded_failure(header->abort.code.load(std::memory_order_acquire));
      }
      release_name_on_failure(error.code());
      throw error;
    };

    // 2. Claim this rank's slot: free, or held by a dead process (a crashed
    //    job with the same id). A live holder means two processes were given
    //    this rank: refuse without touching anything of the job.
    if (!created) {
      RankInfo& me = header->ranks[rank_];
      std::int32_t holder = me.pid.load(std::memory_order_acquire);
      for (;;) {
        if (holder != 0 && process_alive(holder)) {
          segment_.forget_name();  // the segment belongs to the live job: leave it
          fail(ErrorCode::invalid_argument, "rank " + std::to_string(rank_) + " joined job '" + std::string(job_id) +
                                                "' twice (two processes were given the same rank?): pid " +
                                                std::to_string(holder) + " holds it");
        }
        if (me.pid.compare_exchange_weak(holder, pid, std::memory_order_acq_rel)) break;
      }
      me.cpus.store(affinity_bits(), std::memory_order_relaxed);
      me.arrived.store(1, std::memory_order_seq_cst);
    }

    // 3. Wait, bounded, until every rank has arrived and is alive.
    std::vector<double> dead_since(static_cast<std::size_t>(world_size_), -1.0);
    std::vector<std::int32_t> seen_alive(static_cast<std::size_t>(world_size_), 0);
    double next_liveness_check = 0;
    for (;;) {
      // Another rank saw every rank arrived and alive (and may have left
      // since, even exited): the rendezvous is complete for everybody.
      if (header->completed.load(std::memory_order_acquire) != 0) break;
      std::string missing;
      for (int r = 0; r < world_size_; ++r) {
        if (header->ranks[r].arrived.load(std::memory_order_acquire) == 0) {
          missing += (missing.empty() ? "" : ", ") + std::to_string(r);
        }
      }
      const double now = elapsed();
      std::string dead;  // arrived, died, and not (yet) replaced
      if (now >= next_liveness_check) {
        next_liveness_check = now + 0.005;
        for (int r = 0; r < world_size_; ++r) {
          const std::int32_t holder = header->ranks[r].pid.load(std::memory_order_acquire);
          auto& since = dead_since[static_cast<std::size_t>(r)];
          if (holder == 0 || process_alive(holder)) {
            since = -1;
            if (holder != 0) seen_alive[static_cast<std::size_t>(r)] = holder;
            continue;
          }
          if (since < 0) since = now;
          dead += (dead.empty() ? "" : ", ") + std::to_string(r) + " (pid " + std::to_string(holder) + ")";
          if (seen_alive[static_cast<std::size_t>(r)] == holder ||
              now - since >= std::min(kReplacementGraceSeconds, timeout)) {
            fail_rendezvous(Error(ErrorCode::peer_dead, job + " failed: rank " + std::to_string(r) + " (pid " +
                                                            std::to_string(holder) +
                                                            ") died during the rendezvous"));
          }
        }
        if (missing.empty() && dead.empty()) break;
      }
      if (const std::uint32_t code = header->abort.code.load(std::memory_order_acquire); code != 0) {
        throw_recorded_failure(code);  // another rank found the rendezvous broken
      }
      if (now > timeout) {
        fail_rendezvous(Error(ErrorCode::timeout, job + " (world size " + std::to_string(world_size_) + ") timed out after " +
                                                      std::to_string(timeout) + " s; ranks that never arrived: " +
                                                      (missing.empty() ? "none" : missing) +
                                                      (dead.empty() ? "" : "; dead: " + dead)));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(now < 0.01 ? 20 : 500));
    }
    // 4. Everybody has mapped it: the name can go. Any rank may be the one
    //    left to do it (the creator may have died and been replaced).
    header->completed.store(1, std::memory_order_release);
    segment_.unlink();
    channel_ = ShmChannel(segment_.data(), layout, rank_, world_size_);
  }

  Config config_;
  int rank_;
  int world_size_;
  std::string job_id_;
  CommOptions options_;
  std::uint64_t split_count_ = 0;
  std::string segment_name_;
  std::uint32_t shared_count_ = 0;
  std::shared_ptr<SharedRegistry> registry_ = std::make_shared<SharedRegistry>();
  std::size_t chunk_bytes_ = 0;
  std::uint64_t fork_generation_ = 0;
  ShmSegment segment_;
  ShmChannel channel_;
  int threads_ = 1;                      // threads per rank moving data, this one included
  std::unique_ptr<WorkerPool> workers_;  // its helper threads, once started
  std::optional<Error> failure_;
  bool in_protocol_ = false;  // inside run_guarded: errors there are not argument errors
};

Communicator::Communicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Communicator::Communicator(Communicator&&) noexcept = default;
Communicator& Communicator::operator=(Communicator&&) noexcept = default;
Communicator::~Communicator() = default;

Communicator Communicator::create(int rank, int world_size, std::string_view job_id, const CommOptions& options) {
  return Communicator(std::make_unique<ShmCommunicator>(rank, world_size, job_id, options));
}

namespace {
Communicator::Impl& checked(const std::unique_ptr<Communicator::Impl>& impl) {
  if (!impl) fail(ErrorCode::invalid_argument, "communicator was moved from or destroyed");
  return *impl;
}
}  // namespace

int Communicator::rank() const { return checked(impl_).rank(); }
int Communicator::world_size() const { return checked(impl_).world_size(); }
std::size_t Communicator::chunk_bytes() const { return checked(impl_).chunk_bytes(); }
std::chrono::duration<double> Communicator::timeout() const { return checked(impl_).timeout(); }
void Communicator::set_timeout(std::chrono::duration<double> timeout) { checked(impl_).set_timeout(timeout); }

void Communicator::all_reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op) {
  checked(impl_).all_reduce(send, recv, count, dtype, op);
}

void Communicator::barrier() { checked(impl_).barrier(); }

void Communicator::reduce_scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, ReduceOp op) {
  checked(impl_).reduce_scatter(send, recv, recv_count, dtype, op);
}
void Communicator::reduce_scatterv(const void* send, void* recv, std::span<const std::size_t> recv_counts,
                                   DataType dtype, ReduceOp op) {
  checked(impl_).reduce_scatterv(send, recv, recv_counts, dtype, op);
}
void Communicator::all_gather(const void* send, void* recv, std::size_t send_count, DataType dtype) {
  checked(impl_).all_gather(send, recv, send_count, dtype);
}
void Communicator::all_gatherv(const void* send, void* recv, std::span<const std::size_t> counts, DataType dtype) {
  checked(impl_).all_gatherv(send, recv, counts, dtype);
}
void Communicator::broadcast(const void* send, void* recv, std::size_t count, DataType dtype, int root) {
  checked(impl_).broadcast(send, recv, count, dtype, root);
}
void Communicator::reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op, int root) {
  checked(impl_).reduce(send, recv, count, dtype, op, root);
}
void Communicator::gather(const void* send, void* recv, std::size_t send_count, DataType dtype, int root) {
  checked(impl_).gather(send, recv, send_count, dtype, root);
}
void Communicator::scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, int root) {
  checked(impl_).scatter(send, recv, recv_count, dtype, root);
}
void Communicator::all_to_all(const void* send, void* recv, std::size_t count, DataType dtype) {
  checked(impl_).all_to_all(send, recv, count, dtype);
}
void Communicator::all_to_allv(const void* send, std::span<const std::size_t> send_counts,
                               std::span<const std::size_t> send_displs, void* recv,
                               std::span<const std::size_t> recv_counts, std::span<const std::size_t> recv_displs,
                               DataType dtype) {
  checked(impl_).all_to_allv(send, send_counts, send_displs, recv, recv_counts, recv_displs, dtype);
}
void Communicator::send(const void* buffer, std::size_t count, DataType dtype, int peer) {
  const PointToPoint op{PointToPoint::Kind::send, const_cast<void*>(buffer), count, dtype, peer};
  checked(impl_).batch({&op, 1});
}
void Communicator::recv(void* buffer, std::size_t count, DataType dtype, int peer) {
  const PointToPoint op{PointToPoint::Kind::recv, buffer, count, dtype, peer};
  checked(impl_).batch({&op, 1});
}
void Communicator::batch(std::span<const PointToPoint> operations) { checked(impl_).batch(operations); }
std::optional<Communicator> Communicator::split(int color, int key) { return checked(impl_).split(color, key); }
SharedBuffer Communicator::alloc_shared(std::size_t bytes) { return checked(impl_).alloc_shared(bytes); }

void* SharedBuffer::data() const { return state_ ? state_->data() : nullptr; }
std::size_t SharedBuffer::size() const { return state_ ? state_->size() : 0; }

namespace {
// Page-aligned private memory: what a communicator without shared buffers hands out.
class PrivateState final : public SharedBuffer::State {
 public:
  explicit PrivateState(std::size_t bytes)
      : memory_(static_cast<std::byte*>(std::aligned_alloc(kPage, SegmentLayout::round_up(bytes, kPage)))),
        bytes_(bytes) {
    if (!memory_) throw std::bad_alloc();
  }
  std::byte* data() const override { return memory_.get(); }
  std::size_t size() const override { return bytes_; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> memory_;
  std::size_t bytes_;
};
}  // namespace

SharedBuffer Communicator::Impl::alloc_shared(std::size_t bytes) {
  if (bytes == 0) fail(ErrorCode::invalid_argument, "alloc_shared: size must be positive");
  return SharedBuffer(std::make_shared<PrivateState>(bytes));
}
std::optional<Communicator> Communicator::new_group(std::span<const int> ranks) {
  return checked(impl_).new_group(ranks);
}

std::string_view Communicator::all_reduce_algorithm(std::size_t bytes, DataType dtype) const {
  return checked(impl_).all_reduce_algorithm(bytes, dtype);
}

}  // namespace tpcomm
