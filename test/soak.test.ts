// A small soak in CI: seeded random faults and power cuts (sim/soak.ts). Every run
// must end on exactly the new image or exactly the old one, without leaking the token.
// `npm run soak -- --runs 1000` is the long version (README).
import * as assert from "node:assert/strict"
import { buildProgram } from "../sim/program"
import { soak } from "../sim/soak"

describe("soak (seeded faults and power cuts)", function () {
    it("12 runs of seed 20261130: 0 bricked, 0 leaks, 0 panics", async () => {
        const s = await soak({ runs: 12, seed: 20261130, parallel: 4, bytecode: buildProgram() })
        const bad = s.failures.map(f => `run ${f.plan.run}: ${f.outcome} ${f.result} ${f.error ?? ""} ${f.leaks.join("; ")}`)
        assert.deepEqual(bad, [])
        assert.equal(s.runs, 12)
        assert.equal(s.bricked, 0)
        assert.equal(s.leaks, 0)
        assert.equal(s.panics, 0)
        assert.ok(s.faults + s.powerCuts >= 12, `only ${s.faults} faults and ${s.powerCuts} cuts injected`)
        assert.ok(s.updated >= 8, `only ${s.updated} of 12 runs updated`)
    })
})
