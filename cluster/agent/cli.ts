/** Placeholder entry of the node agent; replaced by the agent implementation. */
export async function runNodeAgent(_argv: string[]): Promise<number> {
  process.stderr.write('hearth node: the node agent is not built yet\n');
  return 2;
}
