#!/bin/bash
set -uxo pipefail
cd "${TESTBED:-/testbed}"
git -c core.fileMode=false status
git checkout f5bcd4a5b7cd2c58cfe005dbf511a638a0ff564b -- tests/test_parse.py
git apply -v - <<'EOF_TEST_PATCH'
diff --git a/tests/test_parse.py b/tests/test_parse.py
index b292a74..d7f15f4 100644
--- a/tests/test_parse.py
+++ b/tests/test_parse.py
@@ -12,3 +12,8 @@ def test_single_units():
 def test_rejects_garbage():
     with pytest.raises(ValueError):
         parse_duration("soon")
+
+
+def test_combined_units_add_up():
+    assert parse_duration("1h30m") == 5400
+    assert parse_duration("2m5s") == 125
EOF_TEST_PATCH
: '>>>>> Start Test Output'
python -m pytest -rA -p no:cacheprovider tests/test_parse.py
: '>>>>> End Test Output'
git checkout f5bcd4a5b7cd2c58cfe005dbf511a638a0ff564b -- tests/test_parse.py
