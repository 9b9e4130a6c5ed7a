/**
 * Model names as clients use them: aliases (a short name for a node's long model id) and
 * fallback chains (model A, else B, else C).
 */
export class ModelRoutes {
  constructor(
    private readonly aliases: Readonly<Record<string, string>> = {},
    private readonly fallbacks: Readonly<Record<string, readonly string[]>> = {},
  ) {}

  /** The id nodes know for a name. */
  resolve(name: string): string {
    return this.aliases[name] ?? name;
  }

  /** The models to try for a request, in order, each resolved and listed once. */
  chain(name: string): string[] {
    const out: string[] = [];
    for (const m of [name, ...(this.fallbacks[name] ?? this.fallbacks[this.resolve(name)] ?? [])]) {
      const id = this.resolve(m);
      if (!out.includes(id)) out.push(id);
    }
    return out;
  }

  /** Aliases whose target is among `served`, for the model list. */
  visibleAliases(served: readonly string[]): string[] {
    return Object.entries(this.aliases)
      .filter(([, id]) => served.includes(id))
      .map(([alias]) => alias);
  }
}
