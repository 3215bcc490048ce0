// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Durable output files: a buffered writer whose every write, flush, fsync and close is checked
/// (a full disk is an error naming the file, never a short file), and AtomicFile, which writes
/// `path`.tmp, fsyncs it, renames it over `path` and fsyncs the directory, so `path` is always
/// either the old complete file or the new one, after a kill or a power loss alike.
///
/// Example:
///   sakura::io::AtomicFile f("log/splits.csv");
///   f.out().put("cell,all\n");
///   f.commit();  // without it (an exception, a return) the destructor removes the temp file
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "sakura/error.hpp"

namespace sakura::io {

/// The name an output file is written under until it is complete.
inline std::string temp_path(const std::string& path) { return path + ".tmp"; }

namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;
/// "error while writing 'f' (disk full?): No space left on device"; the hint only where it may apply.
[[noreturn]] inline void failed(const char* what, const std::string& path, int err) {
  bool space = err == ENOSPC || err == EFBIG || err == EIO;
#ifdef EDQUOT
  space = space || err == EDQUOT;
#endif
  sakura::detail::fail(what, " '", path, "'", space ? " (disk full?)" : "", ": ", std::strerror(err));
}
}  // namespace detail

/// fsyncs the directory holding `path`, so a rename or a new file in it survives a power loss.
/// File systems that cannot sync a directory (EINVAL) are accepted as they are.
inline void sync_directory_of(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) detail::failed("cannot open directory", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != EROFS) detail::failed("cannot sync directory", dir, err);
}

/// A buffered writer on a file descriptor. Every failure throws sakura::Error naming the file;
/// the buffer is allocated once at open, so writing allocates nothing.
class FileWriter {
 public:
  enum class Mode { Truncate, Append };
  FileWriter() = default;
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  ~FileWriter() { discard(); }

  void open(const std::string& path, Mode mode) {
    discard();
    const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (mode == Mode::Append ? O_APPEND : O_TRUNC);
    do fd_ = ::open(path.c_str(), flags, 0666);
    while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) detail::failed("cannot open for writing", path, errno);
    path_ = path;
    written_ = 0;
    used_ = 0;
    buf_.resize(kBuffer);
  }
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  /// Bytes handed to put() since open().
  std::uint64_t written() const { return written_; }

  void put(char c) {
    if (used_ == buf_.size()) flush();
    buf_[used_++] = c;
    ++written_;
  }
  void put(std::string_view s) {
    written_ += s.size();
    while (!s.empty()) {
      if (used_ == buf_.size()) flush();
      const std::size_t k = std::min(s.size(), buf_.size() - used_);
      std::memcpy(buf_.data() + used_, s.data(), k);
      used_ += k;
      s.remove_prefix(k);
    }
  }
  /// Hands the buffer to the kernel (write(2)), retrying short writes and EINTR.
  void flush() {
    std::size_t done = 0;
    while (done < used_) {
      const ssize_t n = ::write(fd_, buf_.data() + done, used_ - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        used_ = 0;  // the bytes are lost; what follows must not pretend otherwise
        detail::failed("error while writing", path_, err);
      }
      done += static_cast<std::size_t>(n);
    }
    used_ = 0;
  }
  /// flush() + fsync(2): the bytes are on the disk.
  void sync() {
    flush();
    if (::fsync(fd_) != 0 && errno != EINVAL) detail::failed("error while syncing", path_, errno);
  }
  /// flush() + close(2), both checked (NFS reports a full disk only at close).
  void close() {
    if (fd_ < 0) return;
    try {
      flush();
    } catch (...) {
      discard();
      throw;
    }
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0 && errno != EINTR) detail::failed("error while closing", path_, errno);
  }
  /// Closes without reporting: for paths that are already failing.
  void discard() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    used_ = 0;
  }

 private:
  static constexpr std::size_t kBuffer = 1 << 16;
  int fd_ = -1;
  std::string path_;
  std::vector<char> buf_;
  std::size_t used_ = 0;
  std::uint64_t written_ = 0;
};

/// Writes `path` atomically and durably: into temp_path(path), then fsync, rename, fsync of the
/// directory. Until commit() the old `path` (if any) is untouched; a destructor without a
/// commit (an exception) removes the temp file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(temp_path(path_)) {
    out_.open(tmp_, FileWriter::Mode::Truncate);
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() { abandon(); }

  FileWriter& out() { return out_; }
  const std::string& path() const { return path_; }

  void commit() {
    try {
      out_.sync();
      out_.close();
      std::error_code ec;
      std::filesystem::rename(tmp_, path_, ec);
      if (ec) sakura::detail::fail("cannot rename '", tmp_, "' to '", path_, "': ", ec.message());
    } catch (...) {
      abandon();
      throw;
    }
    done_ = true;
    sync_directory_of(path_);
  }
  /// Drops the temp file (a failed or interrupted write); the old `path` stays as it was.
  void abandon() {
    if (done_) return;
    out_.discard();
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
    done_ = true;
  }

 private:
  std::string path_, tmp_;
  FileWriter out_;
  bool done_ = false;
};

}  // namespace sakura::io
