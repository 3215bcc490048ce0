// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// What a story writes under log_path: the loss log (upstream's TensorBoard scalars, as TSV lines
/// "tick<TAB>name<TAB>value" with upstream's scalar names) and latent CSVs (upstream's
/// "<epoch>_<latent_prefix>.csv", cell names in the first column).
#pragma once

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "sakura/controller/record.hpp"
#include "sakura/error.hpp"
#include "sakura/io/durable.hpp"

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
/// Writing a record formats into a reused buffer and allocates nothing. Every write is checked
/// (a full disk is an error naming the log, never a cut line); sync() makes what was written
/// durable, which the runner does before a checkpoint records the log's length.
class LossLog {
 public:
  static constexpr std::string_view kHeader = "tick\tname\tvalue\n";

  LossLog() = default;
  LossLog(const LossLog&) = delete;
  LossLog& operator=(const LossLog&) = delete;
  /// On an error path: hands over what is buffered, if it can (the error being reported is the news).
  ~LossLog() {
    try {
      out_.close();
    } catch (const Error&) {
    }
  }

  /// Creates the log (with its header line), replacing any previous one.
  void open(const std::string& path) { open_impl(path, Mode::Create, 0); }
  /// Resume: cuts an existing log back to `bytes` (its size when the checkpoint was written), so
  /// lines written after the checkpoint are dropped and the log reads as if the run never stopped.
  void open_resume(const std::string& path, std::uint64_t bytes) { open_impl(path, Mode::Resume, bytes); }
  /// Appends to an existing log (inference), creating it if needed.
  void open_append(const std::string& path) { open_impl(path, Mode::Append, 0); }
  /// Flushes, syncs and closes, each checked.
  void close() {
    if (!out_.is_open()) return;
    sync();
    out_.close();
  }
  bool is_open() const { return out_.is_open(); }
  const std::string& path() const { return path_; }
  /// Every line written from now on also goes to sink (nullptr: none).
  void set_sink(ScalarSink* sink) { sink_ = sink; }

  /// Bytes in the log so far, including what is still buffered.
  std::uint64_t bytes() const { return base_ + out_.written(); }
  void flush() {
    if (out_.is_open()) out_.flush();
    if (sink_) sink_->flush();
  }
  /// flush() + fsync: the lines written so far survive a crash or a power loss.
  void sync() {
    if (out_.is_open()) out_.sync();
    if (sink_) sink_->flush();
  }

  /// Why a log cannot be cut back to `bytes` for a resume (empty: it can): it must exist, hold at
  /// least that many bytes, start with the header and end a line there.
  static std::string resume_problem(const std::string& path, std::uint64_t bytes) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
      return "the loss log '" + path + "' is missing; it is needed to resume (it had " + std::to_string(bytes) +
             " bytes when the checkpoint was written)";
    const auto size = std::filesystem::file_size(path, ec);
    if (ec || size < bytes)
      return "the loss log '" + path + "' is shorter (" + std::to_string(size) +
             " bytes) than when the checkpoint was written (" + std::to_string(bytes) + " bytes)";
    if (bytes < kHeader.size()) return "a loss log of " + std::to_string(bytes) + " bytes cannot hold its header line";
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return "cannot read the loss log '" + path + "': " + std::strerror(errno);
    char head[kHeader.size()];
    char last = 0;
    const bool ok = std::fread(head, 1, sizeof head, f) == sizeof head &&
                    std::fseek(f, static_cast<long>(bytes - 1), SEEK_SET) == 0 && std::fread(&last, 1, 1, f) == 1;
    std::fclose(f);
    if (!ok) return "cannot read the loss log '" + path + "'";
    if (std::string_view(head, sizeof head) != kHeader)
      return "the loss log '" + path + "' does not start with the header line \"tick<TAB>name<TAB>value\"";
    if (last != '\n')
      return "byte " + std::to_string(bytes) + " of the loss log '" + path + "' is not the end of a line";
    return {};
  }

  void write(const LossRecord& r, long long tick, std::string_view prefix, const std::vector<std::string>& groups) {
    if (!out_.is_open()) return;
    for (const auto& b : r.pheno)
      if (b.present) block(tick, prefix, "_pheno_", b, groups);
    for (const auto& b : r.signature)
      if (b.present) block(tick, prefix, "_signature_", b, groups);
    for (const auto& g : groups) terms(tick, prefix, "_main_latent", "", g, group_of(r.main, g));
  }

 private:
  enum class Mode { Create, Resume, Append };
  void open_impl(const std::string& path, Mode mode, std::uint64_t bytes) {
    out_.discard();
    path_ = path;
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    base_ = 0;
    if (mode == Mode::Resume) {
      const std::string problem = resume_problem(path, bytes);
      detail::require(problem.empty(), problem);
      std::filesystem::resize_file(path, bytes, ec);
      detail::require(!ec, "cannot truncate loss log '", path, "': ", ec.message());
      base_ = bytes;
    } else if (mode == Mode::Append && exists) {
      base_ = std::filesystem::file_size(path, ec);
      detail::require(!ec, "cannot read the size of loss log '", path, "': ", ec.message());
    }
    const bool fresh = mode == Mode::Create || !exists;
    out_.open(path, fresh ? io::FileWriter::Mode::Truncate : io::FileWriter::Mode::Append);
    if (fresh) {
      out_.put(kHeader);
      out_.sync();
      io::sync_directory_of(path);  // the new name survives a power loss too
    }
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
      const auto t = std::to_chars(num, num + sizeof num, tick);
      out_.put(std::string_view(num, static_cast<std::size_t>(t.ptr - num)));
      out_.put('\t');
      out_.put(prefix);
      out_.put(kind);
      out_.put(block);
      out_.put('_');
      out_.put(g);
      out_.put('_');
      out_.put(v.names[i]);
      out_.put('\t');
      out_.put(format_number(v.values[i], num));
      out_.put('\n');
      if (sink_) {
        name_.assign(prefix).append(kind).append(block).append("_").append(g).append("_").append(v.names[i]);
        sink_->scalar(tick, name_, v.values[i]);
      }
    }
  }
  io::FileWriter out_;
  std::string path_;
  std::uint64_t base_ = 0;  ///< bytes in the file before this process wrote to it
  ScalarSink* sink_ = nullptr;
  std::string name_;  // the sink's scalar name, built in place
};

/// A CSV of per-cell rows (latents, outputs), written chunk by chunk into a temp file that
/// close() makes durable and renames into place (io::AtomicFile); without close() (an error,
/// an interrupt) the temp file is removed and an older file of that name stays as it was.
class CsvWriter {
 public:
  CsvWriter(const std::string& path, const std::vector<std::string>& header) : file_(path) {
    for (std::size_t i = 0; i < header.size(); ++i) {
      if (i) out().put(',');
      field(header[i]);
    }
    out().put('\n');
  }
  void begin_row(const std::string& name) { field(name); }
  void value(float v) {
    char buf[64];
    out().put(',');
    out().put(format_number(v, buf));
  }
  void end_row() { out().put('\n'); }
  void close() { file_.commit(); }

 private:
  io::FileWriter& out() { return file_.out(); }
  void field(const std::string& s) {  // quoted only when needed, as pandas does
    if (s.find_first_of(",\"\n\r") == std::string::npos) {
      out().put(s);
      return;
    }
    out().put('"');
    for (char c : s) {
      if (c == '"') out().put('"');
      out().put(c);
    }
    out().put('"');
  }
  io::AtomicFile file_;
};

}  // namespace sakura::story
