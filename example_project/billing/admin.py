from django.contrib import admin

from billing.models import Subscription


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["customer_id", "user", "plan_name", "status", "current_period_end"]
    list_filter = ["status"]
    search_fields = ["customer_id", "subscription_id", "user__email"]
