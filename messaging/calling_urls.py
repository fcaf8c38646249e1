from django.urls import path

from messaging import calling_views

urlpatterns = [
    path("v2/calling/relays", calling_views.CallingRelaysView.as_view()),
]
