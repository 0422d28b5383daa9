/**
 * The example's business logic, shared by both example servers and unrelated
 * to Caracal: invoices kept in memory. Nothing here knows about mandates.
 */
import { EventEmitter, on } from "node:events";
import { create } from "@bufbuild/protobuf";
import { InvoiceSchema, type Invoice } from "./gen/acme/billing/v1/billing_pb.js";

/** Invoices in memory, oldest first, with a feed of new ones. */
export class InvoiceBook {
  readonly #invoices: Invoice[] = [];
  readonly #added = new EventEmitter();

  constructor() {
    this.add("globex", 12_000n, "seed");
    this.add("initech", 4_500n, "seed");
  }

  /** Every invoice, oldest first. */
  list(): Invoice[] {
    return [...this.#invoices];
  }

  /** Adds an invoice created by the application `createdBy`. */
  add(customer: string, amountCents: bigint, createdBy: string): Invoice {
    const invoice = create(InvoiceSchema, { invoiceId: `inv-${this.#invoices.length + 1}`, customer, amountCents, createdBy });
    this.#invoices.push(invoice);
    this.#added.emit("invoice", invoice);
    return invoice;
  }

  /** Every invoice there is; then, with `follow`, each new one until `signal` aborts. */
  async *watch(follow: boolean, signal: AbortSignal): AsyncGenerator<Invoice> {
    // Subscribed before the snapshot is taken, so nothing added in between is missed.
    const added = follow ? on(this.#added, "invoice", { signal }) : undefined;
    yield* this.list();
    if (!added) return;
    try {
      for await (const [invoice] of added) yield invoice as Invoice;
    } catch (error) {
      if (!signal.aborted) throw error;
    }
  }
}
