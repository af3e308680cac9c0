// Page-aligned heap buffer. Page alignment keeps the library's copy paths on
// their aligned fast path and makes runs comparable with each other.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace tpcomm::perf {

class AlignedBuffer {
 public:
  static constexpr std::size_t alignment = 4096;

  AlignedBuffer() = default;

  // Zero-filled, so that every page is faulted in here rather than in the
  // first measured call.
  explicit AlignedBuffer(std::size_t bytes) : size_(bytes) {
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + alignment - 1) / alignment * alignment;
    storage_.reset(static_cast<std::byte*>(std::aligned_alloc(alignment, rounded)));
    if (!storage_) throw std::bad_alloc();
    std::memset(storage_.get(), 0, rounded);
  }

  std::byte* data() const noexcept { return storage_.get(); }
  std::size_t size() const noexcept { return size_; }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<std::byte[], Free> storage_;
  std::size_t size_ = 0;
};

}  // namespace tpcomm::perf
