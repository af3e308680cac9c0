// The nccl-tests style table and the JSON report of tpcomm-perf.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <span>
#include <string>

#include "collectives.hpp"
#include "options.hpp"

namespace tpcomm::perf {

// One measured size in one mode, already agreed on by every rank.
struct Record {
  std::size_t bytes = 0;
  std::size_t count = 0;
  bool in_place = false;
  std::size_t iters = 0;
  double time_us = 0;
  double algbw = 0;  // GB/s (1e9 bytes)
  double busbw = 0;  // GB/s (1e9 bytes)
  std::int64_t wrong = 0;
  std::string algo;
};

struct Summary {
  double avg_busbw = 0;
  std::int64_t wrong = 0;
};

Summary summarize(std::span<const Record> records);

class TableWriter {
 public:
  TableWriter(std::FILE* out, const PerfOptions& options, const Collective& collective,
              int world_size);
  void header() const;
  // One line per size; in_place is null for collectives without an in-place mode.
  void row(const Record& out_of_place, const Record* in_place) const;
  void footer(const Summary& summary) const;

 private:
  std::FILE* out_;
  const PerfOptions& options_;
  const Collective& collective_;
  int world_size_;
};

void write_json(std::ostream& out, const PerfOptions& options, const Collective& collective,
                int world_size, std::span<const Record> records, const Summary& summary);

}  // namespace tpcomm::perf
