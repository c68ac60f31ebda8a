/*
 * Runs a tick every periodMs while started, never overlapping itself: the next wait begins when a
 * tick has ended, so a slow `ss` never piles up runs. The agent's watches poll this way.
 */
export class PollLoop {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly periodMs: number,
    private readonly tick: () => Promise<void>,
  ) {}

  start(): void {
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.running) this.timer = setTimeout(() => void this.tick().finally(() => this.schedule()), this.periodMs);
  }
}
