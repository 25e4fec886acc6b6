// Validate glTF/GLB files with the Khronos glTF validator; prints one JSON report per file:
//   node validate_gltf.mjs a.glb [b.glb ...]   ->   [{"file", "errors", "warnings", "messages"}]
import fs from 'node:fs';
import { validateBytes } from 'gltf-validator';

const reports = [];
for (const file of process.argv.slice(2)) {
  const result = await validateBytes(new Uint8Array(fs.readFileSync(file)), { maxIssues: 50 });
  reports.push({
    file,
    errors: result.issues.numErrors,
    warnings: result.issues.numWarnings,
    messages: result.issues.messages,
  });
}
console.log(JSON.stringify(reports));
