#include "report.hpp"

#include <cinttypes>
#include <cmath>
#include <string_view>

namespace tpcomm::perf {
namespace {

// Column widths, shared by the header and the rows so that they line up.
constexpr int bytes_width = 12;
constexpr int count_width = 10;
constexpr int dtype_width = 6;
constexpr int redop_width = 5;
constexpr int algo_width = 9;
constexpr int time_width = 10;
constexpr int bw_width = 7;
constexpr int wrong_width = 6;
// "  time algbw busbw #wrong" of one mode.
constexpr int mode_width = 2 + time_width + 1 + bw_width + 1 + bw_width + 1 + wrong_width;

std::string_view redop_label(const Collective& collective, const PerfOptions& options) {
  return collective.reduces ? redop_name(options.redop) : std::string_view{"none"};
}

// Centres `title` over the columns of one mode; returns the columns it used.
int print_mode_title(std::FILE* out, std::string_view title) {
  const int left = (mode_width - static_cast<int>(title.size())) / 2;
  std::fprintf(out, "%*s%.*s", left, "", static_cast<int>(title.size()), title.data());
  return left + static_cast<int>(title.size());
}

void print_mode_columns(std::FILE* out) {
  std::fprintf(out, "  %*s %*s %*s %*s", time_width, "time(us)", bw_width, "algbw", bw_width,
               "busbw", wrong_width, "#wrong");
}

void print_mode(std::FILE* out, const Record& r) {
  std::fprintf(out, "  %*.2f %*.2f %*.2f %*" PRId64, time_width, r.time_us, bw_width, r.algbw,
               bw_width, r.busbw, wrong_width, r.wrong);
}

// JSON has no NaN or infinity; a zero-time measurement would produce them.
std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", value);
  return text;
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

const char* json_bool(bool value) { return value ? "true" : "false"; }

}  // namespace

Summary summarize(std::span<const Record> records) {
  Summary summary;
  double busbw_total = 0;
  for (const Record& r : records) {
    busbw_total += r.busbw;
    summary.wrong += r.wrong;
  }
  if (!records.empty()) summary.avg_busbw = busbw_total / static_cast<double>(records.size());
  return summary;
}

TableWriter::TableWriter(std::FILE* out, const PerfOptions& options, const Collective& collective,
                         int world_size)
    : out_(out), options_(options), collective_(collective), world_size_(world_size) {}

void TableWriter::header() const {
  std::fprintf(out_, "# tpcomm-perf: op %.*s, %d rank%s", static_cast<int>(collective_.name.size()),
               collective_.name.data(), world_size_, world_size_ == 1 ? "" : "s");
  if (options_.split > 1) {
    std::fprintf(out_, " in each of %zu concurrent groups (figures of group 0)", options_.split);
  }
  if (collective_.has_payload)
    std::fprintf(out_, ", dtype %.*s", static_cast<int>(dtype_name(options_.dtype).size()),
                 dtype_name(options_.dtype).data());
  if (collective_.reduces)
    std::fprintf(out_, ", redop %.*s", static_cast<int>(redop_name(options_.redop).size()),
                 redop_name(options_.redop).data());
  if (collective_.rooted) std::fprintf(out_, ", root %d", options_.root);
  if (options_.iters)
    std::fprintf(out_, ", iters %zu", *options_.iters);
  else
    std::fprintf(out_, ", iters auto");
  std::fprintf(out_, ", warmup %zu", options_.warmup);
  if (collective_.has_payload) std::fprintf(out_, ", check %s", options_.check ? "on" : "off");
  if (!options_.algo.empty()) std::fprintf(out_, ", algo %s", options_.algo.c_str());
  std::fprintf(out_, "\n");

  if (!collective_.has_payload) {
    std::fprintf(out_, "#%*s\n", bytes_width - 1, "time(us)");
    return;
  }
  const int key_width = bytes_width + 1 + count_width + 1 + dtype_width + 1 + redop_width + 1 + algo_width;
  std::fprintf(out_, "#%*s", key_width - 1, "");
  const int used = print_mode_title(out_, "out-of-place");
  std::fprintf(out_, "%*s", mode_width - used, "");
  print_mode_title(out_, "in-place");
  std::fprintf(out_, "\n#%*s %*s %*s %*s %*s", bytes_width - 1, "bytes", count_width, "count",
               dtype_width, "dtype", redop_width, "redop", algo_width, "algo");
  print_mode_columns(out_);
  print_mode_columns(out_);
  std::fprintf(out_, "\n");
}

void TableWriter::row(const Record& out_of_place, const Record* in_place) const {
  if (!collective_.has_payload) {
    std::fprintf(out_, "%*.2f\n", bytes_width, out_of_place.time_us);
    std::fflush(out_);
    return;
  }
  const std::string_view redop = redop_label(collective_, options_);
  const std::string_view dtype = dtype_name(options_.dtype);
  std::fprintf(out_, "%*zu %*zu %*.*s %*.*s %*s", bytes_width, out_of_place.bytes, count_width,
               out_of_place.count, dtype_width, static_cast<int>(dtype.size()), dtype.data(),
               redop_width, static_cast<int>(redop.size()), redop.data(), algo_width,
               out_of_place.algo.c_str());
  print_mode(out_, out_of_place);
  if (in_place) {
    print_mode(out_, *in_place);
  } else {
    // No in-place form: keep the columns, mark them absent.
    std::fprintf(out_, "  %*s %*s %*s %*s", time_width, "-", bw_width, "-", bw_width, "-", wrong_width, "-");
  }
  std::fprintf(out_, "\n");
  // Rows appear as sizes finish, so a long sweep shows progress.
  std::fflush(out_);
}

void TableWriter::footer(const Summary& summary) const {
  if (collective_.has_payload) std::fprintf(out_, "# avg busbw: %.2f GB/s\n", summary.avg_busbw);
  std::fprintf(out_, "# wrong: %" PRId64 "\n", summary.wrong);
  std::fflush(out_);
}

void write_json(std::ostream& out, const PerfOptions& options, const Collective& collective,
                int world_size, std::span<const Record> records, const Summary& summary) {
  const std::string dtype = json_string(dtype_name(options.dtype));
  const std::string redop = json_string(redop_label(collective, options));
  out << "{\n  \"settings\": {"
      << "\"op\": " << json_string(collective.name) << ", \"world_size\": " << world_size
      << ", \"dtype\": " << dtype << ", \"redop\": " << redop
      << ", \"min_bytes\": " << options.min_bytes << ", \"max_bytes\": " << options.max_bytes
      << ", \"step_factor\": " << options.step_factor << ", \"root\": " << options.root
      << ", \"iters\": "
      << (options.iters ? std::to_string(*options.iters) : json_string("auto"))
      << ", \"warmup\": " << options.warmup << ", \"check\": " << json_bool(options.check)
      << ", \"algo\": " << (options.algo.empty() ? "null" : json_string(options.algo)) << "},\n"
      << "  \"results\": [";
  const char* separator = "\n";
  for (const Record& r : records) {
    out << separator << "    {\"bytes\": " << r.bytes << ", \"count\": " << r.count
        << ", \"dtype\": " << dtype << ", \"redop\": " << redop
        << ", \"inplace\": " << json_bool(r.in_place) << ", \"iters\": " << r.iters
        << ", \"time_us\": " << json_number(r.time_us) << ", \"algbw\": " << json_number(r.algbw)
        << ", \"busbw\": " << json_number(r.busbw) << ", \"wrong\": " << r.wrong
        << ", \"algo\": " << json_string(r.algo) << "}";
    separator = ",\n";
  }
  out << "\n  ],\n  \"avg_busbw\": " << json_number(summary.avg_busbw)
      << ",\n  \"wrong\": " << summary.wrong << "\n}\n";
}

}  // namespace tpcomm::perf
