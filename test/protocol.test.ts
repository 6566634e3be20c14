// Protocol constants are defined once: codes and enum values come from the files `devs
// build` generates from services/otaupdater.md; the names of error codes from
// src/protocol.g.ts, which must match the spec as it is now.
import * as assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import { GENERATED, generateProtocol } from "../tools/gen-protocol"
import { OTA_ERROR_NAMES } from "../packages/ota/src/protocol.g"
import { OtaUpdaterError } from "../.devicescript/ts/constants"

describe("protocol constants", () => {
    it("packages/ota/src/protocol.g.ts is what tools/gen-protocol.ts makes of the spec (run `npm run gen`)", () => {
        assert.equal(readFileSync(GENERATED, "utf8"), generateProtocol())
    })
    it("names every Error code of the spec", () => {
        const codes = Object.values(OtaUpdaterError).filter(v => typeof v === "number") as number[]
        for (const c of codes) assert.ok(OTA_ERROR_NAMES[c] && !OTA_ERROR_NAMES[c].startsWith("error_"), `code ${c}`)
    })
})
