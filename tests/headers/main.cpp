// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The program of the self-contained-header test: it links every header's translation unit (the
// test is that they compiled and linked) and reports how many there were.
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  std::printf("%s public headers compile alone and link together\n", argc > 1 ? argv[1] : "all");
  return argc > 1 && std::atoi(argv[1]) > 0 ? 0 : 1;
}
