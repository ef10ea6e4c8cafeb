# robust.cmake -- robustness and trace tests of the Yjs document model
# (crdt/yjs/tandem_yjs.h), included from tests/yjs/CMakeLists.txt:
#
#   yjs_robust_corpus     gen_corpus.mjs (npm yjs) writes the corpus of valid
#                         updates test_yjs_robust needs (fixture yjs_corpus)
#   yjs_robust            test_yjs_robust: the valid corpus must apply; then
#                         500,000 mutated variants (50,000 under TD_SANITIZE,
#                         150,000 in a plain Debug build) on documents
#                         holding a prefix of valid updates: each an error
#                         with the document unchanged, or a success
#   yjs_hostile           test_yjs_hostile: hand-built hostile updates
#   yjs_traces            make-updates.mjs + tandem-yjs-bench on every
#                         ../shared/traces/*.json.gz; skips (77) only when
#                         that directory is absent. Under TD_SANITIZE only
#                         the traces under 400 KB (rustcode, sveltecomponent)
#   yjs_traces_synthetic  the same on tests/trace/fixtures' synthetic
#                         sequential and concurrent traces (astral
#                         characters, several agents); never skips
#
# node and client-js/node_modules/yjs are prerequisites: without node the
# node-based tests are registered as failures, never skipped.
set(_yr_dir ${CMAKE_CURRENT_LIST_DIR})

add_executable(test_yjs_robust ${_yr_dir}/test_yjs_robust.c)
target_link_libraries(test_yjs_robust PRIVATE tandem_yjs td_check td_rng)
add_executable(test_yjs_hostile ${_yr_dir}/test_yjs_hostile.c)
target_link_libraries(test_yjs_hostile PRIVATE tandem_yjs td_check)

add_test(NAME yjs_hostile COMMAND test_yjs_hostile)
set_tests_properties(yjs_hostile PROPERTIES TIMEOUT 600)

if(TD_SANITIZE)
  set(_yr_variants 50000)
  set(_yr_trace_opts --max-bytes 400000)
elseif(CMAKE_BUILD_TYPE STREQUAL "Debug")
  set(_yr_variants 150000)
  set(_yr_trace_opts)
else()
  set(_yr_variants 500000)
  set(_yr_trace_opts)
endif()

find_program(TD_NODE NAMES node nodejs DOC "node, for the client-js tests")
set(_yr_missing)
if(NOT TD_NODE)
  set(_yr_missing "node (nodejs) 20 or later")
endif()

set(_yr_corpus ${CMAKE_CURRENT_BINARY_DIR}/yjs_corpus)
set(_yr_shared ${PROJECT_SOURCE_DIR}/../shared/traces)
set(_yr_fixtures ${PROJECT_SOURCE_DIR}/tests/trace/fixtures)
set(_yr_make_updates ${PROJECT_SOURCE_DIR}/bench/yjs/make-updates.mjs)

if(_yr_missing)
  foreach(_t yjs_robust yjs_traces yjs_traces_synthetic)
    add_test(NAME ${_t}
             COMMAND sh -c "echo \"${_t} cannot run, missing: $1\"; exit 1" sh "${_yr_missing}")
  endforeach()
else()
  add_test(NAME yjs_robust_corpus
           COMMAND ${TD_NODE} ${_yr_dir}/gen_corpus.mjs ${_yr_corpus})
  set_tests_properties(yjs_robust_corpus PROPERTIES FIXTURES_SETUP yjs_corpus TIMEOUT 120)
  add_test(NAME yjs_robust
           COMMAND test_yjs_robust ${_yr_corpus} --variants ${_yr_variants})
  set_tests_properties(yjs_robust PROPERTIES FIXTURES_REQUIRED yjs_corpus TIMEOUT 900)

  add_test(NAME yjs_traces
           COMMAND sh ${_yr_dir}/yjs_trace.sh ${_yr_trace_opts} ${TD_NODE} ${_yr_make_updates}
                   $<TARGET_FILE:tandem-yjs-bench> ${_yr_shared})
  set_tests_properties(yjs_traces PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900)
  add_test(NAME yjs_traces_synthetic
           COMMAND sh ${_yr_dir}/yjs_trace.sh ${TD_NODE} ${_yr_make_updates}
                   $<TARGET_FILE:tandem-yjs-bench>
                   ${_yr_fixtures}/synthetic-seq.json.gz ${_yr_fixtures}/synthetic-concurrent.json)
  set_tests_properties(yjs_traces_synthetic PROPERTIES TIMEOUT 300)
endif()
