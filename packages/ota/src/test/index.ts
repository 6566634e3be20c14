// Device-side unit tests, run in the real VM:
//   npx devicescript run packages/ota/src/test/index.ts --test --test-self-exit -T 60000
import "./semver.test"
import "./glob.test"
import "./jsonstream.test"
import "./httpparse.test"
import "./http.test"
import "./imagewriter.test"
import "./imagecheck.test"
