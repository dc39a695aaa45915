{
  "targets": [
    {
      "target_name": "crossport",
      "sources": [
        "native/addon.cc",
        "native/background.cc",
        "native/clone.cc",
        "native/handoff.cc",
        "native/link.cc",
        "native/message.cc",
        "native/poll_window.cc",
        "native/port.cc",
        "native/rendezvous.cc",
        "native/ring.cc",
        "native/segment.cc",
        "native/serializer.cc",
        "native/transferable.cc",
        "native/worker.cc"
      ],
      # Calls into a terminating worker (worker.terminate()) fail; without this node-addon-api
      # turns that into a fatal error instead of an exception we can drop.
      "defines": ["NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-std=gnu++17"],
      "conditions": [
        ["OS!='win'", { "sources": ["native/posix/os.cc"], "libraries": ["-ldl"] }],
        ["OS=='mac'", {
          "xcode_settings": {
            "CLANG_CXX_LANGUAGE_STANDARD": "c++20",
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES"
          }
        }]
      ]
    }
  ]
}
