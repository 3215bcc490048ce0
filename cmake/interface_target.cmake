# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# sakura_interface_target(NAME DEFINE [LIBS...]): the INTERFACE target sakura::NAME for an optional
# dependency (hdf5, zlib): it adds LIBS and DEFINE=1 to sakura::sakura, installed under the same name.
include_guard(GLOBAL)

function(sakura_interface_target name define)
  add_library(sakura_${name} INTERFACE)
  add_library(sakura::${name} ALIAS sakura_${name})
  # Installed as sakura::${name} (export namespace sakura:: + this name), the same name as in the build tree.
  set_target_properties(sakura_${name} PROPERTIES EXPORT_NAME ${name})
  target_link_libraries(sakura_${name} INTERFACE sakura ${ARGN})
  target_compile_definitions(sakura_${name} INTERFACE ${define}=1)
  if(SAKURA_INSTALL)
    install(TARGETS sakura_${name} EXPORT sakuraTargets)
  endif()
endfunction()
