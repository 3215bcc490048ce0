// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// What a story writes under log_path: the loss log (upstream's TensorBoard scalars, as TSV lines
/// "tick<TAB>name<TAB>value" with upstream's scalar names) and latent CSVs (upstream's
/// "<epoch>_<latent_prefix>.csv", cell names in the first column).
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "sakura/controller/record.hpp"
#include "sakura/error.hpp"

namespace sakura::story {

/// Shortest text that reads back as the same value (what pandas writes for float32 columns).
template <class F>
inline std::string_view format_number(F v, char (&buf)[64]) {
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return {buf, static_cast<std::size_t>(r.ptr - buf)};
}

/// Receives every scalar the loss log writes, e.g. sakura-train's TensorBoard event files.
/// begin(purge_step) starts a log: steps >= purge_step logged before are void (0: a fresh run,
/// the checkpoint's tick: a resumed one, -1: nothing void, as for inference appending).
struct ScalarSink {
  virtual ~ScalarSink() = default;
  virtual void begin(std::int64_t purge_step) = 0;
  virtual void scalar(std::int64_t tick, std::string_view name, double value) = 0;
  virtual void flush() = 0;
};

/// The loss log. Scalar names are upstream's Logger.log_loss names:
///   <prefix>_pheno_<name>_<group>_<term>, <prefix>_signature_<name>_<group>_<term>,
///   <prefix>_main_latent_<group>_<term>
/// Writing a record formats into a reused buffer and allocates nothing.
class LossLog {
 public:
  LossLog() = default;
  LossLog(const LossLog&) = delete;
  LossLog& operator=(const LossLog&) = delete;
  ~LossLog() { close(); }

  /// Creates the log (with its header line), replacing any previous one.
  void open(const std::string& path) { open_impl(path, Mode::Create, 0); }
  /// Resume: cuts an existing log back to `bytes` (its size when the checkpoint was written), so
  /// lines written after the checkpoint are dropped and the log reads as if the run never stopped.
  void open_resume(const std::string& path, std::uint64_t bytes) { open_impl(path, Mode::Resume, bytes); }
  /// Appends to an existing log (inference), creating it if needed.
  void open_append(const std::string& path) { open_impl(path, Mode::Append, 0); }
  void close() {
    if (f_) std::fclose(f_);
    f_ = nullptr;
  }
  bool is_open() const { return f_ != nullptr; }
  const std::string& path() const { return path_; }
  /// Every line written from now on also goes to sink (nullptr: none).
  void set_sink(ScalarSink* sink) { sink_ = sink; }

  /// Bytes written so far (flushes first): what a checkpoint records.
  std::uint64_t bytes() {
    if (!f_) return 0;
    flush();
    return static_cast<std::uint64_t>(std::ftell(f_));
  }
  void flush() {
    if (f_) std::fflush(f_);
    if (sink_) sink_->flush();
  }

  void write(const LossRecord& r, long long tick, std::string_view prefix, const std::vector<std::string>& groups) {
    if (!f_) return;
    for (const auto& b : r.pheno)
      if (b.present) block(tick, prefix, "_pheno_", b, groups);
    for (const auto& b : r.signature)
      if (b.present) block(tick, prefix, "_signature_", b, groups);
    for (const auto& g : groups) terms(tick, prefix, "_main_latent", "", g, group_of(r.main, g));
  }

 private:
  enum class Mode { Create, Resume, Append };
  void open_impl(const std::string& path, Mode mode, std::uint64_t bytes) {
    close();
    path_ = path;
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    if (mode == Mode::Resume) {
      detail::require(exists, "loss log '", path, "' is missing; it is needed to resume (it had ", bytes,
                      " bytes when the checkpoint was written)");
      const auto size = std::filesystem::file_size(path, ec);
      detail::require(!ec && size >= bytes, "loss log '", path, "' is shorter (", size,
                      " bytes) than when the checkpoint was written (", bytes, " bytes)");
      std::filesystem::resize_file(path, bytes, ec);
      detail::require(!ec, "cannot truncate loss log '", path, "': ", ec.message());
    }
    const bool fresh = mode == Mode::Create || !exists;
    f_ = std::fopen(path.c_str(), fresh ? "wb" : "ab");
    detail::require(f_ != nullptr, "cannot open loss log '", path, "' for writing");
    if (fresh) std::fputs("tick\tname\tvalue\n", f_);
  }
  static const TermValues& group_of(const BlockRecord& b, const std::string& g) {
    if (g == "loss") return b.loss;
    if (g == "regularization") return b.regularization;
    if (g == "loss_raw") return b.loss_raw;
    return b.regularization_raw;
  }
  void block(long long tick, std::string_view prefix, const char* kind, const BlockRecord& b,
             const std::vector<std::string>& groups) {
    for (const auto& g : groups) terms(tick, prefix, kind, b.name, g, group_of(b, g));
  }
  void terms(long long tick, std::string_view prefix, const char* kind, std::string_view block, const std::string& g,
             const TermValues& v) {
    char num[64];
    for (std::size_t i = 0; i < v.names.size(); ++i) {
      if (!v.present[i]) continue;
      std::fprintf(f_, "%lld\t", tick);
      std::fwrite(prefix.data(), 1, prefix.size(), f_);
      std::fputs(kind, f_);
      std::fwrite(block.data(), 1, block.size(), f_);
      std::fputc('_', f_);
      std::fputs(g.c_str(), f_);
      std::fputc('_', f_);
      std::fputs(v.names[i].c_str(), f_);
      std::fputc('\t', f_);
      const auto s = format_number(v.values[i], num);
      std::fwrite(s.data(), 1, s.size(), f_);
      std::fputc('\n', f_);
      if (sink_) {
        name_.assign(prefix).append(kind).append(block).append("_").append(g).append("_").append(v.names[i]);
        sink_->scalar(tick, name_, v.values[i]);
      }
    }
  }
  std::FILE* f_ = nullptr;
  std::string path_;
  ScalarSink* sink_ = nullptr;
  std::string name_;  // the sink's scalar name, built in place
};

/// A CSV of per-cell rows (latents, outputs), written chunk by chunk.
class CsvWriter {
 public:
  CsvWriter(const std::string& path, const std::vector<std::string>& header) : path_(path) {
    f_ = std::fopen(path.c_str(), "wb");
    detail::require(f_ != nullptr, "cannot write '", path, "'");
    for (std::size_t i = 0; i < header.size(); ++i) {
      if (i) std::fputc(',', f_);
      field(header[i]);
    }
    std::fputc('\n', f_);
  }
  CsvWriter(const CsvWriter&) = delete;
  CsvWriter& operator=(const CsvWriter&) = delete;
  ~CsvWriter() {
    if (f_) std::fclose(f_);
  }
  void begin_row(const std::string& name) { field(name); }
  void value(float v) {
    char buf[64];
    std::fputc(',', f_);
    const auto s = format_number(v, buf);
    std::fwrite(s.data(), 1, s.size(), f_);
  }
  void end_row() { std::fputc('\n', f_); }
  void close() {
    if (f_) {
      const bool ok = std::fflush(f_) == 0;
      std::fclose(f_);
      f_ = nullptr;
      detail::require(ok, "error while writing '", path_, "' (disk full?)");
    }
  }

 private:
  void field(const std::string& s) {  // quoted only when needed, as pandas does
    if (s.find_first_of(",\"\n\r") == std::string::npos) {
      std::fwrite(s.data(), 1, s.size(), f_);
      return;
    }
    std::fputc('"', f_);
    for (char c : s) {
      if (c == '"') std::fputc('"', f_);
      std::fputc(c, f_);
    }
    std::fputc('"', f_);
  }
  std::FILE* f_ = nullptr;
  std::string path_;
};

}  // namespace sakura::story
