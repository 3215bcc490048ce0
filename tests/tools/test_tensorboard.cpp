// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura-train's TensorBoard writer: CRC32C against RFC 3720's vectors, the TFRecord framing and the
// hand-encoded Event bytes (check_tfevents.py decodes whole files with protobuf itself).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tensorboard.hpp"

namespace tb = sakura::tools::tensorboard;

namespace {
std::string bytes(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}
}  // namespace

TEST_CASE("CRC32C: RFC 3720 B.4 test vectors", "[tools][tensorboard]") {
  std::vector<unsigned char> v(32, 0);
  CHECK(tb::crc32c(v.data(), v.size()) == 0x8A9136AAu);
  std::fill(v.begin(), v.end(), 0xFF);
  CHECK(tb::crc32c(v.data(), v.size()) == 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) v[i] = static_cast<unsigned char>(i);
  CHECK(tb::crc32c(v.data(), v.size()) == 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) v[i] = static_cast<unsigned char>(31 - i);
  CHECK(tb::crc32c(v.data(), v.size()) == 0x113FDB5Cu);
  // the iSCSI read command PDU of B.4
  const std::vector<unsigned char> pdu{0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                       0x14, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0x14, 0, 0, 0, 0x18,
                                       0x28, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0};
  CHECK(tb::crc32c(pdu.data(), pdu.size()) == 0xD9963A56u);
  CHECK(tb::crc32c("123456789", 9) == 0xE3069283u);  // the common check value
}

TEST_CASE("TensorBoard: a scalar Event's protobuf bytes", "[tools][tensorboard]") {
  // wall_time 1.5 (field 1, fixed64), step 300 (field 2, varint ac 02), summary (field 5) holding one
  // value (field 1) with tag "ab" (field 1) and simple_value 0.25f (field 2, fixed32)
  const std::string want = bytes({0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x10, 0xac, 0x02, 0x2a, 0x0b, 0x0a, 0x09, 0x0a,
                                  0x02, 'a', 'b', 0x15, 0, 0, 0x80, 0x3e});
  CHECK(tb::scalar_event(1.5, 300, "ab", 0.25f) == want);
}

TEST_CASE("TensorBoard: TFRecord framing with masked CRCs", "[tools][tensorboard]") {
  const std::string r = tb::tfrecord("xyz");
  REQUIRE(r.size() == 8 + 4 + 3 + 4);
  CHECK(r.substr(0, 8) == bytes({3, 0, 0, 0, 0, 0, 0, 0}));
  auto u32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(r[at + i]);
    return v;
  };
  const std::uint32_t c = tb::crc32c(r.data(), 8);
  CHECK(u32(8) == ((c >> 15 | c << 17) + 0xA282EAD8u));
  CHECK(r.substr(12, 3) == "xyz");
  CHECK(u32(15) == tb::masked_crc32c("xyz", 3));
}

TEST_CASE("TensorBoard: event files begin with file_version, resumed ones purge", "[tools][tensorboard]") {
  const auto dir = std::filesystem::temp_directory_path() / ("sakura_tb_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string first, second;
  {
    tb::EventWriter w(dir.string());
    w.scalar("loss", 1, 2.0f);
    w.flush();
    first = w.path();
    tb::EventWriter resumed(dir.string(), 7);
    second = resumed.path();
  }
  CHECK(first != second);
  CHECK(std::filesystem::path(first).filename().string().rfind("events.out.tfevents.", 0) == 0);
  auto read = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string a = read(first), b = read(second);
  const std::string version = "brain.Event:2";
  CHECK(a.find(version) != std::string::npos);
  CHECK(a.find(tb::scalar_event(0, 1, "loss", 2.0f).substr(9)) != std::string::npos);  // all but wall_time
  CHECK(b.find(bytes({0x10, 0x07, 0x3a, 0x02, 0x08, 0x01})) != std::string::npos);  // step 7, SessionLog START
  REQUIRE_THROWS_WITH(tb::EventWriter("/nonexistent/dir"), Catch::Contains("/nonexistent/dir") &&
                                                                 Catch::Contains("-x"));
  std::filesystem::remove_all(dir);
}
