// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// TensorBoard event files as tensorboardX writes them (upstream logs every scalar through it):
// TFRecord framing with masked CRC32C, Event/Summary protos encoded by hand. Part of the tool, not
// of the header-only library, so the library gains no dependency.
#pragma once

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <memory>
#include <string_view>
#include <type_traits>

#include <sakura/error.hpp>
#include <sakura/story/logs.hpp>

namespace sakura::tools::tensorboard {

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TFRecord and iSCSI (RFC 3720).
inline std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
      t[i] = c;
    }
    return t;
  }();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

/// TFRecord's masked CRC: rotated right by 15 bits plus a constant, so a CRC of data that itself
/// holds CRCs stays informative.
inline std::uint32_t masked_crc32c(const void* data, std::size_t n) {
  const std::uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/// The few protobuf wire rules an Event needs (little-endian fixed fields, varints, length-delimited).
class Proto {
 public:
  /// A double (wire type 1, fixed64) or a float (wire type 5, fixed32).
  template <class F>
  Proto& fixed(int field, F v) {
    static_assert(sizeof(F) == 8 || sizeof(F) == 4);
    key(field, sizeof(F) == 8 ? 1 : 5);
    std::conditional_t<sizeof(F) == 8, std::uint64_t, std::uint32_t> u;
    std::memcpy(&u, &v, sizeof u);
    for (std::size_t i = 0; i < sizeof u; ++i) b_.push_back(static_cast<char>(u >> (8 * i)));
    return *this;
  }
  Proto& varint(int field, std::uint64_t v) {
    key(field, 0);
    raw_varint(v);
    return *this;
  }
  Proto& bytes(int field, std::string_view s) {
    key(field, 2);
    raw_varint(s.size());
    b_.append(s);
    return *this;
  }
  const std::string& str() const { return b_; }

 private:
  void key(int field, int wire) { raw_varint(static_cast<std::uint64_t>(field) << 3 | static_cast<unsigned>(wire)); }
  void raw_varint(std::uint64_t v) {
    for (; v >= 0x80; v >>= 7) b_.push_back(static_cast<char>(v | 0x80));
    b_.push_back(static_cast<char>(v));
  }
  std::string b_;
};

// Field numbers of tensorflow/core/util/event.proto and framework/summary.proto.
namespace event {
constexpr int kWallTime = 1, kStep = 2, kFileVersion = 3, kSummary = 5, kSessionLog = 7;
}
namespace summary {
constexpr int kValue = 1, kTag = 1, kSimpleValue = 2;
}
constexpr int kSessionLogStatus = 1, kSessionStart = 1;

inline std::string scalar_event(double wall_time, std::int64_t step, std::string_view tag, float value) {
  const std::string v = Proto().bytes(summary::kTag, tag).fixed(summary::kSimpleValue, value).str();
  const std::string s = Proto().bytes(summary::kValue, v).str();
  return Proto()
      .fixed(event::kWallTime, wall_time)
      .varint(event::kStep, static_cast<std::uint64_t>(step))
      .bytes(event::kSummary, s)
      .str();
}

/// One TFRecord: length, masked CRC of the length, data, masked CRC of the data (all little-endian).
inline std::string tfrecord(std::string_view data) {
  std::string r;
  const std::uint64_t n = data.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>(n >> (8 * i));
  auto put32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) r.push_back(static_cast<char>(v >> (8 * i)));
  };
  r.append(len, 8);
  put32(masked_crc32c(len, 8));
  r.append(data);
  put32(masked_crc32c(data.data(), data.size()));
  return r;
}

inline double now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// An events.out.tfevents.<time>.<host>.<pid>.<n> file in `dir`, starting with the file_version
/// event. A resumed run passes purge_step: TensorBoard then drops what earlier files logged at
/// steps >= purge_step (a SessionLog START, as tensorboardX's purge_step writes), just as the loss
/// log is cut back to the checkpoint.
class EventWriter {
 public:
  EventWriter(const std::string& dir, std::int64_t purge_step = -1) {
    static int counter = 0;
    char host[256] = "localhost";
    ::gethostname(host, sizeof host - 1);
    char name[512];
    std::snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%d.%d", static_cast<long long>(now()), host,
                  static_cast<int>(::getpid()), counter++);
    path_ = (std::filesystem::path(dir) / name).string();
    f_ = std::fopen(path_.c_str(), "wb");
    sakura::detail::require(f_ != nullptr, "cannot create TensorBoard event file '", path_,
                            "' (use -x to run without TensorBoard logs)");
    const std::int64_t step = purge_step < 0 ? 0 : purge_step;
    record(Proto().fixed(event::kWallTime, now()).varint(event::kStep, step).bytes(event::kFileVersion, "brain.Event:2").str());
    if (purge_step >= 0) {
      const std::string start = Proto().varint(kSessionLogStatus, kSessionStart).str();
      record(Proto().fixed(event::kWallTime, now()).varint(event::kStep, step).bytes(event::kSessionLog, start).str());
    }
  }
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;
  ~EventWriter() {
    if (f_) std::fclose(f_);
  }

  void scalar(std::string_view tag, std::int64_t step, float value) { record(scalar_event(now(), step, tag, value)); }
  void flush() {
    if (std::fflush(f_) != 0) failed();
  }
  const std::string& path() const { return path_; }

 private:
  void record(std::string_view data) {
    const std::string r = tfrecord(data);
    if (std::fwrite(r.data(), 1, r.size(), f_) != r.size()) failed();
  }
  [[noreturn]] void failed() const {
    sakura::detail::fail("error while writing '", path_, "' (disk full?): ", std::strerror(errno));
  }
  std::string path_;
  std::FILE* f_ = nullptr;
};

/// The loss log's scalars, with the same tags as losses.tsv, as event files in log_path: each
/// begin() (a run, a resumption, an inference) starts a new file, as tensorboardX does.
class Sink : public story::ScalarSink {
 public:
  explicit Sink(std::string dir) : dir_(std::move(dir)) {}
  void begin(std::int64_t purge_step) override {
    w_.reset();
    w_ = std::make_unique<EventWriter>(dir_, purge_step);
  }
  void scalar(std::int64_t tick, std::string_view name, double value) override {
    if (w_) w_->scalar(name, tick, static_cast<float>(value));
  }
  void flush() override {
    if (w_) w_->flush();
  }

 private:
  std::string dir_;
  std::unique_ptr<EventWriter> w_;
};

}  // namespace sakura::tools::tensorboard
