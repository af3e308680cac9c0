// CPU kernels of torch.ops.tpcomm.all_reduce and all_reduce_ in C++.
//
// The operators are defined (schemas, Meta, Functionalize and AutogradMeta
// kernels) in tpcomm/torch/_ops.py; this module only replaces the two CPU
// kernels of the hot path, because a CPU kernel written in Python costs the
// dispatcher a round trip into the interpreter on every call (several
// microseconds, more than a decode-sized all_reduce itself).
//
// The fast path covers the common case: a contiguous CPU tensor of a
// supported dtype, a known op name and a group registered with this module.
// Everything else (a non-contiguous tensor, an unknown group or dtype, a
// closed communicator) is handed, unchanged, to the Python kernel through the
// private operators tpcomm::_all_reduce_py / _all_reduce__py, so behaviour and
// error types are those of the Python implementation. A failed library call
// is raised through tpcomm::_raise_error, whose Python kernel builds the same
// tpcomm.Error subclass the Python API raises.
//
// The library is reached through function pointers handed over by the Python
// package (which loaded it with ctypes), so both use the same copy of it.

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/Allocator.h>
#include <torch/library.h>

#include "tpcomm/tpcomm.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

using AllReduceFunction = decltype(&tpcomm_all_reduce);
using LastErrorFunction = decltype(&tpcomm_last_error);

AllReduceFunction g_all_reduce = nullptr;
LastErrorFunction g_last_error = nullptr;

// Group name -> communicator handle. Written when Python registers, forgets
// or closes a group (rare); read on every call.
std::shared_mutex g_groups_mutex;
std::unordered_map<std::string, tpcomm_comm_t> g_groups;

tpcomm_comm_t find_group(c10::string_view name) {
  std::shared_lock lock(g_groups_mutex);
  const auto found = g_groups.find(std::string(name.data(), name.size()));
  return found == g_groups.end() ? nullptr : found->second;
}

// tpcomm_dtype_t of a scalar type, or -1 (then the Python kernel explains).
// The values are tpcomm.h's, which the static_asserts below pin.
int dtype_code(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Float: return 0;
    case c10::ScalarType::Double: return 1;
    case c10::ScalarType::Half: return 2;
    case c10::ScalarType::BFloat16: return 3;
    case c10::ScalarType::Char: return 4;
    case c10::ScalarType::Byte: return 5;
    case c10::ScalarType::Int: return 6;
    case c10::ScalarType::Long: return 7;
    default: return -1;
  }
}

static_assert(TPCOMM_F32 == 0 && TPCOMM_F64 == 1 && TPCOMM_F16 == 2 && TPCOMM_BF16 == 3 && TPCOMM_I8 == 4 &&
              TPCOMM_U8 == 5 && TPCOMM_I32 == 6 && TPCOMM_I64 == 7);
static_assert(TPCOMM_SUM == 0 && TPCOMM_PROD == 1 && TPCOMM_MIN == 2 && TPCOMM_MAX == 3 && TPCOMM_AVG == 4);

// tpcomm_redop_t of an op name (any case, as the Python API accepts), or -1.
int op_code(c10::string_view name) {
  static constexpr std::string_view kNames[] = {"sum", "prod", "min", "max", "avg"};
  for (int code = 0; code < 5; ++code) {
    const std::string_view known = kNames[code];
    if (name.size() != known.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < known.size() && same; ++i) {
      const char c = name[i];
      same = (c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) == known[i];
    }
    if (same) return code;
  }
  return -1;
}

// Memory for out-of-place results: a block freed with its tensor is kept (up
// to a total of TPCOMM_TORCH_OUTPUT_CACHE bytes, default 256M; 0 turns the
// cache off) and handed to the next result of the same size, most recently
// freed first. Any thread may free a result: the lists are guarded by a mutex.
// A model calls all_reduce with the same shapes layer after layer, so the next
// result lands in memory that is mapped, already faulted in and often still in
// cache, instead of memory the C library has just returned to the kernel
// (fresh pages, zeroed on first touch) or lines that left the cache long ago.
// Small results gain too: a block from here skips at::empty's trip through the
// dispatcher, 0.3 us of a 4 KiB call (docs/performance.md item 26). Each block
// is charged at least a line and its allocation header, so many tiny (or
// empty) results cannot grow the lists past the limit.
class OutputCache final : public c10::Allocator {
 public:
  // Read on every result without the lock; changed rarely, under it.
  std::size_t limit() const { return limit_.load(std::memory_order_relaxed); }

  // A new limit; blocks beyond it are freed now (0: keep none, cache off).
  void set_limit(std::size_t bytes) {
    std::lock_guard lock(mutex_);
    limit_.store(bytes, std::memory_order_relaxed);
    for (auto& [size, blocks] : free_) {
      while (cached_ > bytes && !blocks.empty()) {
        std::free(blocks.back());
        blocks.pop_back();
        cached_ -= charge(size);
      }
    }
  }

  // Bytes charged for the blocks kept now (see charge).
  std::size_t held() const {
    std::lock_guard lock(mutex_);
    return cached_;
  }

  c10::DataPtr allocate(std::size_t bytes) const override {
    void* data = nullptr;
    {
      std::lock_guard lock(mutex_);
      const auto found = free_.find(bytes);
      if (found != free_.end() && !found->second.empty()) {
        data = found->second.back();
        found->second.pop_back();
        cached_ -= charge(bytes);
      }
    }
    if (data == nullptr && posix_memalign(&data, 64, bytes == 0 ? 64 : bytes) != 0) data = nullptr;
    TORCH_CHECK(data != nullptr, "tpcomm: cannot allocate ", bytes, " bytes for an all_reduce result");
    return {data, new Block{this, data, bytes}, &OutputCache::release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

 private:
  // What a kept block counts against the limit: its bytes rounded up to a
  // line, plus a line for the C library's header and alignment.
  static constexpr std::size_t charge(std::size_t bytes) { return (bytes + 63) / 64 * 64 + 64; }

  struct Block {
    const OutputCache* cache;
    void* data;
    std::size_t bytes;
  };

  static void release(void* context) {
    const auto* block = static_cast<Block*>(context);
    const OutputCache& cache = *block->cache;
    bool kept = false;
    {
      std::lock_guard lock(cache.mutex_);
      if (cache.cached_ + charge(block->bytes) <= cache.limit()) {
        cache.free_[block->bytes].push_back(block->data);
        cache.cached_ += charge(block->bytes);
        kept = true;
      }
    }
    if (!kept) std::free(block->data);
    delete block;
  }

  mutable std::mutex mutex_;
  std::atomic<std::size_t> limit_{std::size_t{256} << 20};  // set from TPCOMM_TORCH_OUTPUT_CACHE by the Python package
  mutable std::unordered_map<std::size_t, std::vector<void*>> free_;  // bytes -> blocks, most recent last
  mutable std::size_t cached_ = 0;
};

// Never destroyed: results may be freed during interpreter shutdown, after
// static destructors have run.
OutputCache& output_cache() {
  static OutputCache* cache = new OutputCache();
  return *cache;
}

at::Tensor new_result(const at::Tensor& x) {
  OutputCache& cache = output_cache();
  if (cache.limit() == 0) return at::empty(x.sizes(), x.options());
  return at::Tensor(at::detail::empty_generic(x.sizes(), &cache, c10::DispatchKeySet(c10::DispatchKey::CPU),
                                              x.scalar_type(), c10::MemoryFormat::Contiguous));
}

bool fast_path(const at::Tensor& x) {
  return g_all_reduce != nullptr && x.device().is_cpu() && x.layout() == c10::kStrided && x.is_contiguous() &&
         dtype_code(x.scalar_type()) >= 0;
}

[[noreturn]] void raise_library_error(const at::Tensor& x, tpcomm_status_t status) {
  const char* message = g_last_error != nullptr ? g_last_error() : nullptr;
  static const auto raise = c10::Dispatcher::singleton()
                                .findSchemaOrThrow("tpcomm::_raise_error", "")
                                .typed<void(const at::Tensor&, int64_t, c10::string_view)>();
  raise.call(x, status, message != nullptr ? message : "");
  TORCH_CHECK(false, "tpcomm: the library failed with status ", status, ": ", message != nullptr ? message : "");
}

at::Tensor all_reduce(const at::Tensor& x, c10::string_view op, c10::string_view group) {
  tpcomm_comm_t comm = fast_path(x) ? find_group(group) : nullptr;
  const int code = op_code(op);
  if (comm == nullptr || code < 0) {
    static const auto python = c10::Dispatcher::singleton()
                                   .findSchemaOrThrow("tpcomm::_all_reduce_py", "")
                                   .typed<at::Tensor(const at::Tensor&, c10::string_view, c10::string_view)>();
    return python.call(x, op, group);
  }
  at::Tensor out = new_result(x);
  const tpcomm_status_t status =
      g_all_reduce(comm, x.data_ptr(), out.data_ptr(), static_cast<std::size_t>(x.numel()),
                   static_cast<tpcomm_dtype_t>(dtype_code(x.scalar_type())), static_cast<tpcomm_redop_t>(code));
  if (status != TPCOMM_SUCCESS) raise_library_error(x, status);
  return out;
}

at::Tensor& all_reduce_(at::Tensor& x, c10::string_view op, c10::string_view group) {
  tpcomm_comm_t comm = fast_path(x) ? find_group(group) : nullptr;
  const int code = op_code(op);
  if (comm == nullptr || code < 0) {
    static const auto python = c10::Dispatcher::singleton()
                                   .findSchemaOrThrow("tpcomm::_all_reduce__py", "")
                                   .typed<at::Tensor&(at::Tensor&, c10::string_view, c10::string_view)>();
    return python.call(x, op, group);
  }
  const tpcomm_status_t status =
      g_all_reduce(comm, x.data_ptr(), x.data_ptr(), static_cast<std::size_t>(x.numel()),
                   static_cast<tpcomm_dtype_t>(dtype_code(x.scalar_type())), static_cast<tpcomm_redop_t>(code));
  if (status != TPCOMM_SUCCESS) raise_library_error(x, status);
  return x;
}

}  // namespace

// Called by the Python package through ctypes.
extern "C" {

__attribute__((visibility("default"))) void tpcomm_torch_set_library(void* all_reduce, void* last_error) {
  g_all_reduce = reinterpret_cast<AllReduceFunction>(all_reduce);
  g_last_error = reinterpret_cast<LastErrorFunction>(last_error);
}

// comm == nullptr forgets the name.
__attribute__((visibility("default"))) void tpcomm_torch_set_group(const char* name, tpcomm_comm_t comm) {
  std::unique_lock lock(g_groups_mutex);
  if (comm == nullptr) {
    g_groups.erase(name);
  } else {
    g_groups[name] = comm;
  }
}

// Limit of the cache of freed results (see OutputCache); 0 empties and disables it.
__attribute__((visibility("default"))) void tpcomm_torch_set_output_cache(std::size_t bytes) {
  output_cache().set_limit(bytes);
}

// Bytes the cache of freed results holds now, as charged against its limit.
__attribute__((visibility("default"))) std::size_t tpcomm_torch_output_cache_held() { return output_cache().held(); }

// A communicator is being closed: every name bound to it falls back to the
// Python kernel, which reports the closed group.
__attribute__((visibility("default"))) void tpcomm_torch_forget_comm(tpcomm_comm_t comm) {
  std::unique_lock lock(g_groups_mutex);
  for (auto it = g_groups.begin(); it != g_groups.end();) {
    it = it->second == comm ? g_groups.erase(it) : std::next(it);
  }
}

}  // extern "C"

TORCH_LIBRARY_IMPL(tpcomm, CPU, m) {
  m.impl("all_reduce", &all_reduce);
  m.impl("all_reduce_", &all_reduce_);
}
