// The README is the front door: every npm script it tells a user to run must exist.
import { strict as assert } from "node:assert"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { ROOT } from "../sim/program"

describe("README", () => {
    it("names only npm scripts that package.json has", () => {
        const readme = readFileSync(join(ROOT, "README.md"), "utf8")
        const scripts = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts as Record<string, string>
        const named = new Set([...readme.matchAll(/npm run ([\w:-]+)/g)].map(m => m[1]))
        for (const s of ["start", "test"]) if (readme.includes(`npm ${s}`)) named.add(s)
        assert.ok(named.has("sim") && named.has("bench"), "the README names its scripts")
        const missing = [...named].filter(n => !(n in scripts))
        assert.deepEqual(missing, [], `README names npm scripts that package.json lacks: ${missing.join(", ")}`)
    })
})
